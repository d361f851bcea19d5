//! Judges the files of a recorded history again (a chaos session's `history.jsonl`) with a
//! larger search budget than the checkers' default, for a file the session's report could
//! not judge ("the search gave up"). Prints the file checker's verdict.
//!
//!     cargo run --release -p warren-history --example judge_files -- HISTORY.jsonl [STEPS]

use warren_history::{files, History, Verdict};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: judge_files HISTORY.jsonl [STEPS]");
        std::process::exit(2)
    };
    let steps: u64 = match args.get(1).map(|s| s.parse()) {
        None => 1_000_000_000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("STEPS must be a whole number, e.g. 1000000000");
            std::process::exit(2)
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2)
    });
    let history = History::from_json_lines(&text).unwrap_or_else(|e| {
        eprintln!("{path} is not a history: {e}");
        std::process::exit(2)
    });
    let started = std::time::Instant::now();
    let r = files::check_with_budget(&history, steps);
    println!("files: {} ({:.1?})", r.judged, started.elapsed());
    for n in &r.notes {
        println!("  note: {n}");
    }
    match &r.verdict {
        Verdict::Pass => println!("  pass"),
        Verdict::Violated(vs) => {
            for v in vs {
                println!("  violation: {v}");
            }
            std::process::exit(1)
        }
        Verdict::Invalid(why) => {
            println!("  cannot judge: {why}");
            std::process::exit(1)
        }
    }
}
