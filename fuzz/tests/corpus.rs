//! Replays the committed corpus of every target (`fuzz/corpus/<target>/`, docs/fuzzing.md)
//! through the target's function: every input the fuzzers kept, and every crash turned into
//! a regression, must run without panicking. Also runs the seeds as they are made now, so
//! a change to a request type or a record shows up here before the corpus is remade.

use std::path::Path;

#[test]
fn every_corpus_file_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in warren_fuzz::TARGETS {
        let n = warren_fuzz::replay_dir(target, &root.join(name))
            .unwrap_or_else(|e| panic!("target {name}: {e}"));
        assert!(
            n > 0,
            "target {name} has no corpus under {}",
            root.display()
        );
    }
}

#[test]
fn the_seeds_run_through_their_targets() {
    let seeds = warren_fuzz::seeds::all();
    for (name, _) in warren_fuzz::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| *t == name),
            "target {name} has no seeds"
        );
    }
    for (target, seed, bytes) in seeds {
        let run = warren_fuzz::target(target).expect("seeds name known targets");
        run(&bytes);
        let _ = seed;
    }
}
