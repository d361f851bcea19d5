//! `--html`: the report as one self-contained HTML page (no scripts, fonts or network) with
//! inline SVG plots of its timeline: latency percentiles, throughput and session states over
//! time. Plain string building; every piece of text from the report is escaped.

use crate::report::{Report, OP_TABLE_HEADER, PROCESS_TABLE_HEADER};
use std::fmt::Write as _;

/// Plot size in SVG user units.
const W: f64 = 960.0;
const H: f64 = 340.0;
/// Margins around the plotting area (the top one holds the title and the legend).
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 62.0;
const BOTTOM: f64 = 48.0;
/// Most points a series may have and still get a marker on each.
const MARKERS_UP_TO: usize = 120;

/// Colours of the operation kinds, in report order, then for any other kind.
const OP_COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];
const OTHER_COLOURS: [&str; 4] = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line on a plot: `(x, y)` points, `None` where there is no value (a gap).
struct Series {
    name: String,
    colour: &'static str,
    dashed: bool,
    points: Vec<(f64, Option<f64>)>,
}

/// A tick step of 1, 2 or 5 × 10^k giving about five ticks up to `max` (> 0).
fn nice_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    // 1% slack: a run of 10.002 s gets an axis to 10, not 15.
    let f = if norm <= 1.01 {
        1.0
    } else if norm <= 2.02 {
        2.0
    } else if norm <= 5.05 {
        5.0
    } else {
        10.0
    };
    f * mag
}

/// The axis's top (a whole number of steps at or above `max`) and its step.
fn axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let step = nice_step(max);
    // Values up to 1% of a step past the top are drawn at the top.
    ((max / step - 0.01).ceil().max(1.0) * step, step)
}

/// A tick label: no trailing zeros, at most three decimals.
fn fmt_num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// One SVG line plot with axes, ticks, labels and a legend, and a labelled vertical line
/// at each of `marks` (the faults: when each took effect).
fn plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    marks: &[(f64, String)],
) -> String {
    let finite = |v: &Option<f64>| v.filter(|y| y.is_finite());
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(marks.iter().map(|m| m.0))
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| finite(&p.1)))
        .fold(0.0, f64::max);
    let (x_top, x_step) = axis(x_max);
    let (y_top, y_step) = axis(y_max);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let sx = |x: f64| LEFT + x.clamp(0.0, x_top) / x_top * pw;
    let sy = |y: f64| TOP + ph - y.clamp(0.0, y_top) / y_top * ph;

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="plot" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}">"##,
        t = escape(title)
    );
    let _ = write!(
        s,
        r##"<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>"##
    );
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"##,
        escape(title)
    );
    // Grid, ticks and tick labels.
    let mut k = 0.0;
    while k * y_step <= y_top + y_step * 1e-6 {
        let v = k * y_step;
        let y = sy(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 5.0,
            LEFT - 8.0,
            y + 4.0,
            fmt_num(v)
        );
        k += 1.0;
    }
    let mut k = 0.0;
    while k * x_step <= x_top + x_step * 1e-6 {
        let v = k * x_step;
        let x = sx(v);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 5.0,
            TOP + ph + 18.0,
            fmt_num(v)
        );
        k += 1.0;
    }
    // Axes and their labels.
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        TOP + ph,
        TOP + ph,
        LEFT + pw,
        TOP + ph
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        H - 8.0,
        escape(x_label)
    );
    let _ = write!(
        s,
        r##"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    if series
        .iter()
        .all(|s| s.points.iter().all(|p| finite(&p.1).is_none()))
    {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="13" fill="#888" text-anchor="middle">no samples</text>"##,
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    // The faults: a dotted line and a label at each.
    for (x, label) in marks.iter().filter(|m| m.0.is_finite()) {
        let x = sx(*x);
        let _ = write!(
            s,
            r##"<g class="fault"><line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#7f7f7f" stroke-width="1.5" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">{}</text></g>"##,
            TOP + ph,
            x + 3.0,
            TOP + 12.0,
            escape(label)
        );
    }
    // The series: one polyline per unbroken run of values, markers when there are few.
    for se in series {
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for &(x, y) in &se.points {
            match finite(&y) {
                Some(y) if x.is_finite() => runs
                    .last_mut()
                    .expect("at least one run")
                    .push((sx(x), sy(y))),
                _ => runs.push(Vec::new()),
            }
        }
        let _ = write!(
            s,
            r##"<g class="series" data-series="{}">"##,
            escape(&se.name)
        );
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                r##"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"##,
                se.colour,
                pts.join(" ")
            );
            if run.len() == 1 || se.points.len() <= MARKERS_UP_TO {
                for (x, y) in run {
                    let _ = write!(
                        s,
                        r##"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"##,
                        se.colour
                    );
                }
            }
        }
        s.push_str("</g>");
    }
    // The legend, in a row under the title.
    let mut lx = LEFT;
    for se in series {
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r##"<line x1="{lx:.1}" y1="38" x2="{:.1}" y2="38" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="42" font-size="12">{}</text>"##,
            lx + 24.0,
            se.colour,
            lx + 29.0,
            escape(&se.name)
        );
        lx += 29.0 + 7.0 * se.name.chars().count() as f64 + 18.0;
    }
    s.push_str("</svg>");
    s
}

/// The operation kinds the plots show: those requested or seen, in report order.
fn plotted_ops(r: &Report) -> Vec<String> {
    let rate = |name: &str| match name {
        "read" => r.read_rate,
        "write" => r.write_rate,
        "lock" => r.lock_rate,
        _ => 0.0,
    };
    let mut names: Vec<String> = r.ops.keys().cloned().collect();
    for t in &r.timeline {
        for k in t.ops.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let order = |n: &str| ["read", "write", "lock"].iter().position(|k| *k == n);
    names.sort_by_key(|n| (order(n).unwrap_or(usize::MAX), n.clone()));
    names
        .into_iter()
        .filter(|n| {
            rate(n) > 0.0
                || r.ops.get(n).is_some_and(|o| o.count + o.errors > 0)
                || r.timeline
                    .iter()
                    .any(|t| t.ops.get(n).is_some_and(|o| o.count + o.errors > 0))
        })
        .collect()
}

fn op_colour(i: usize) -> &'static str {
    OP_COLOURS
        .get(i)
        .copied()
        .unwrap_or(OTHER_COLOURS[i.saturating_sub(OP_COLOURS.len()) % OTHER_COLOURS.len()])
}

/// The three plots: latency percentiles, throughput and session states over time.
fn plots(r: &Report) -> [String; 3] {
    let ops = plotted_ops(r);
    let mut marks: Vec<(f64, String)> = r
        .faults
        .iter()
        .filter_map(|f| f.done_s.map(|t| (t, format!("{} {}", f.action, f.member))))
        .collect();
    if let Some(rs) = &r.reshard {
        marks.extend(rs.start_s.map(|t| (t, "reshard starts".to_string())));
        marks.extend(rs.end_s.map(|t| (t, format!("reshard {}", rs.state))));
    }
    let x_label = "seconds since the measured window started";
    let mut latency = Vec::new();
    let mut rate = Vec::new();
    for (i, name) in ops.iter().enumerate() {
        let colour = op_colour(i);
        let get =
            |f: &dyn Fn(&crate::report::IntervalOp) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
                r.timeline
                    .iter()
                    .map(|t| (t.t_s, t.ops.get(name).and_then(f)))
                    .collect()
            };
        latency.push(Series {
            name: format!("{name} p50"),
            colour,
            dashed: false,
            points: get(&|o| o.p50_ms),
        });
        latency.push(Series {
            name: format!("{name} p99"),
            colour,
            dashed: true,
            points: get(&|o| o.p99_ms),
        });
        rate.push(Series {
            name: name.clone(),
            colour,
            dashed: false,
            points: get(&|o| Some(o.throughput_per_s)),
        });
    }
    // Expired is dashed so that jeopardy shows through where both are 0.
    let states = |name: &str, colour, f: fn(&crate::report::SessionStates) -> u64| Series {
        name: name.into(),
        colour,
        dashed: name == "expired",
        points: r
            .timeline
            .iter()
            .map(|t| (t.t_s, Some(f(&t.sessions) as f64)))
            .collect(),
    };
    let sessions = vec![
        states("safe", "#2ca02c", |s| s.safe),
        states("jeopardy", "#ff7f0e", |s| s.jeopardy),
        states("expired", "#d62728", |s| s.expired),
    ];
    [
        plot(
            "Latency per second (p50 solid, p99 dashed)",
            x_label,
            "latency (ms)",
            &latency,
            &marks,
        ),
        plot(
            "Throughput per second",
            x_label,
            "successful ops/s",
            &rate,
            &marks,
        ),
        plot("Session states", x_label, "sessions", &sessions, &marks),
    ]
}

/// The reshard's section ([`crate::reshard::ReshardReport`]): the move, its write pauses,
/// and a table of each operation kind's latency before, during and after it.
fn reshard_section(s: &mut String, r: &Report, rs: &crate::reshard::ReshardReport) {
    let secs = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1} s"));
    let _ = writeln!(
        s,
        "<h2>Reshard</h2>\n<p>{}: cell {} ({}) added; job {} <b>{}</b>: {} of {} slots \
         moved, {} given up. Due at {:.1} s, cell serving at {}; the move ran from {} to {}: \
         <b>{}</b> in all (the job's own clock: {}).</p>",
        escape(&rs.spec),
        escape(&rs.cell),
        escape(&rs.cell_addr),
        escape(rs.job.as_deref().unwrap_or("-")),
        escape(&rs.state),
        rs.slots_moved,
        rs.slots_planned,
        rs.slots_aborted,
        rs.at_s,
        secs(rs.cell_ready_s),
        secs(rs.start_s),
        secs(rs.end_s),
        secs(rs.total_s),
        secs(rs.job_s),
    );
    if !rs.message.is_empty() {
        let _ = writeln!(s, "<p>{}</p>", escape(&rs.message));
    }
    match &rs.write_pause {
        Some(w) => {
            let _ = writeln!(
                s,
                "<p>Write pause per slot ({} slots): p50 {} ms, p99 <b>{} ms</b>, max {} ms.</p>",
                w.slots, w.p50_ms, w.p99_ms, w.max_ms
            );
        }
        None => s.push_str("<p>Write pause per slot: none recorded.</p>\n"),
    }
    s.push_str(
        "<table>\n<tr><th>op</th><th>before p50 ms</th><th>before p99 ms</th>\
         <th>during p50 ms</th><th>during p99 ms</th><th>during ok</th><th>during errors</th>\
         <th>after p50 ms</th><th>after p99 ms</th></tr>\n",
    );
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for (name, o) in &rs.ops {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(name),
            ms(o.before.p50_ms),
            ms(o.before.p99_ms),
            ms(o.during.p50_ms),
            ms(o.during.p99_ms),
            o.during.count,
            o.during.errors,
            ms(o.after.p50_ms),
            ms(o.after.p99_ms),
        );
    }
    s.push_str("</table>\n");
    let _ = writeln!(
        s,
        "<p>During the move: {} failed calls, {} sessions went into jeopardy, {} expired; \
         {} lock overlaps and {} stale sequencers. acked_lost over the whole run (read back \
         after the move): {}.</p>",
        rs.errors_during,
        rs.jeopardy_during,
        rs.expired_during,
        rs.lock_overlaps_during,
        rs.stale_sequencers_during,
        if r.acked_lost_checked {
            r.acked_lost.to_string()
        } else {
            "not checked".to_string()
        }
    );
    if rs.held_locks > 0 {
        let _ = writeln!(
            s,
            "<p>Locks held through the move: <b>{} of {}</b> still held by their holder after \
             it (sequencer current, released as held).</p>",
            rs.held_locks_kept, rs.held_locks
        );
        for p in &rs.held_lock_problems {
            let _ = writeln!(s, "<p class=\"note\">{}</p>", escape(p));
        }
    }
    if !rs.errors_during_by_code.is_empty() {
        s.push_str("<ul>\n");
        for (k, n) in &rs.errors_during_by_code {
            let _ = writeln!(s, "<li>{n} × {}</li>", escape(k));
        }
        s.push_str("</ul>\n");
    }
}

/// The report as a self-contained HTML page.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>warren loadtest report</title>\n<style>\n\
         body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1000px; }\n\
         table { border-collapse: collapse; margin: 8px 0 16px; }\n\
         th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }\n\
         th:first-child, td:first-child { text-align: left; }\n\
         svg.plot { display: block; margin: 12px 0; border: 1px solid #ddd; font-family: sans-serif; }\n\
         .note { color: #8a5a00; }\n\
         </style>\n</head>\n<body>\n<h1>warren loadtest</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p>{} sessions over {} connections to {} {}; ramp {:.1} s, measured {:.1} s.<br>\
         Workload: read {}/s, write {}/s, lock {}/s (open-loop, Poisson) over {} files, Zipf s={}.</p>",
        r.sessions.target,
        r.connections,
        escape(&r.target),
        escape(&r.addresses.join(",")),
        r.ramp_s,
        r.duration_s,
        r.read_rate,
        r.write_rate,
        r.lock_rate,
        r.files,
        r.zipf
    );
    s.push_str("<table>\n<tr>");
    for column in OP_TABLE_HEADER {
        let _ = write!(s, "<th>{column}</th>");
    }
    s.push_str("</tr>\n");
    for (name, o) in &r.ops {
        let _ = write!(s, "<tr><td>{}</td>", escape(name));
        for figure in o.table_figures() {
            let _ = write!(s, "<td>{figure}</td>");
        }
        s.push_str("</tr>\n");
    }
    let _ = writeln!(
        s,
        "<tr><td>total</td><td>{}</td><td>{}</td><td>{:.1}</td><td colspan=\"5\"></td></tr>\n</table>",
        r.ops_total, r.errors, r.throughput_per_s
    );
    let ss = &r.sessions;
    let _ = writeln!(
        s,
        "<p>Sessions: {} created ({} create errors), {} KeepAlive replies ({} errors); \
         jeopardy {}, safe {}, expired {}; {} closed. Arrivals dropped: {}. acked_lost: {}{}.</p>",
        ss.created,
        ss.create_errors,
        ss.keepalives,
        ss.keepalive_errors,
        ss.jeopardy,
        ss.safe,
        ss.expired,
        ss.closed,
        r.dropped,
        r.acked_lost,
        if r.acked_lost_checked {
            ""
        } else {
            " (not checked: see the notes)"
        }
    );
    let _ = writeln!(
        s,
        "<p>Longest wait of any operation: {:.1} ms; {} retried calls; {} moves to another \
         proxy.</p>",
        r.longest_wait_ms, r.retries, ss.moved
    );
    let _ = writeln!(
        s,
        "<p>Lock check: {} acquisitions, {} overlapping holders, {} stale sequencers.</p>",
        r.locks.acquired, r.locks.overlaps, r.locks.stale_sequencers
    );
    if !r.faults.is_empty() {
        s.push_str("<p>Faults:</p>\n<ul>\n");
        for f in &r.faults {
            let outcome = match f.outcome() {
                Ok(done) => format!("done at {done:.1} s"),
                Err(why) => format!("failed: {}", escape(why)),
            };
            let _ = writeln!(
                s,
                "<li>{} {} at {:.1} s: {outcome}</li>",
                escape(&f.action),
                escape(&f.member),
                f.at_s
            );
        }
        s.push_str("</ul>\n");
    }
    match (&r.keepalives, r.absorption_factor) {
        (Some(k), Some(f)) => {
            let _ = writeln!(
                s,
                "<p>KeepAlive absorption factor: <b>{f:.1}</b> ({} client KeepAlives at the \
                 proxies, {} reaching the cells).</p>",
                k.client_at_proxies, k.at_cells
            );
        }
        (Some(k), None) => {
            let _ = writeln!(
                s,
                "<p>KeepAlive absorption factor: unbounded ({} client KeepAlives at the \
                 proxies, none reached a cell).</p>",
                k.client_at_proxies
            );
        }
        _ => {}
    }
    if !r.errors_by_code.is_empty() {
        s.push_str("<p>Errors:</p>\n<ul>\n");
        for (k, n) in &r.errors_by_code {
            let eg = r
                .error_examples
                .get(k)
                .filter(|m| !m.is_empty())
                .map(|m| format!(" (e.g. {})", escape(m)))
                .unwrap_or_default();
            let _ = writeln!(s, "<li>{n} × {}{eg}</li>", escape(k));
        }
        s.push_str("</ul>\n");
    }
    if !r.processes.is_empty() {
        s.push_str(
            "<p>Server processes (RSS at the window's end, CPU used in the window):</p>\n\
             <table>\n<tr>",
        );
        for column in PROCESS_TABLE_HEADER.iter().chain(&["partial"]) {
            let _ = write!(s, "<th>{column}</th>");
        }
        s.push_str("</tr>\n");
        for p in &r.processes {
            let _ = write!(s, "<tr><td>{}</td>", escape(&p.member));
            for figure in p.table_figures(r.ops_total) {
                let _ = write!(s, "<td>{figure}</td>");
            }
            let _ = writeln!(
                s,
                "<td>{}</td></tr>",
                escape(p.partial.as_deref().unwrap_or(""))
            );
        }
        s.push_str("</table>\n");
    }
    if let Some(rs) = &r.reshard {
        reshard_section(&mut s, r, rs);
    }
    for n in &r.notes {
        let _ = writeln!(s, "<p class=\"note\">Note: {}</p>", escape(n));
    }
    s.push_str(
        "<h2>Over time</h2>\n<p>One sample a second of the measured window (and of the \
         drain after it); operations count in the second they completed in, their latency \
         from their intended send time. Session states: <i>safe</i> live sessions with a \
         current lease, <i>jeopardy</i> live sessions whose lease ran out locally with no \
         KeepAlive reply yet, <i>expired</i> sessions expired so far.</p>\n",
    );
    for p in plots(r) {
        s.push_str(&p);
        s.push('\n');
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{latency_histogram, IntervalOp, OpReport, SessionStates, TimelineSample};

    fn synthetic() -> Report {
        let mut h = latency_histogram();
        for us in 1..=1000 {
            h.record(us * 3).unwrap();
        }
        let mut r = Report {
            target: "proxies".into(),
            addresses: vec!["127.0.0.1:1<script>&".into()],
            duration_s: 10.0,
            read_rate: 50.0,
            write_rate: 5.0,
            lock_rate: 1.0,
            notes: vec!["a <b>note</b> & more".into()],
            ..Default::default()
        };
        for name in ["read", "write", "lock"] {
            r.ops.insert(name.into(), OpReport::new(&h, 0, 0, 10.0));
        }
        for k in 1..=10u64 {
            let mut t = TimelineSample {
                t_s: k as f64,
                dt_s: 1.0,
                sessions: SessionStates {
                    safe: 50 - k % 3,
                    jeopardy: k % 3,
                    expired: k / 4,
                },
                ..Default::default()
            };
            for (name, rate) in [("read", 50u64), ("write", 5), ("lock", 1)] {
                let mut h = latency_histogram();
                // Writes have an empty second (a gap in their latency lines).
                if !(name == "write" && k == 4) {
                    for i in 0..rate + k {
                        h.record(1000 + 100 * i + 500 * k).unwrap();
                    }
                }
                t.ops.insert(name.into(), IntervalOp::new(&h, 0, 1.0));
            }
            r.timeline.push(t);
        }
        r.finish_totals();
        r
    }

    /// Every `<tag` in `html` that is not self-closed is closed as often as it opens.
    fn balanced(html: &str, tag: &str) -> bool {
        let (mut open, mut self_closed) = (0, 0);
        for rest in html.split(&format!("<{tag}")).skip(1) {
            if !(rest.starts_with(' ') || rest.starts_with('>')) {
                continue; // another tag with this prefix
            }
            open += 1;
            let end = rest.find('>').expect("tag ends");
            if rest[..end].ends_with('/') {
                self_closed += 1;
            }
        }
        open == html.matches(&format!("</{tag}>")).count() + self_closed
    }

    #[test]
    fn renders_three_plots_with_every_series() {
        let r = synthetic();
        let html = render(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        assert_eq!(html.matches("</svg>").count(), 3);
        for tag in ["svg", "text", "g", "polyline", "table", "p"] {
            assert!(balanced(&html, tag), "unbalanced <{tag}>");
        }
        // Every polyline is self-closed.
        for rest in html.split("<polyline").skip(1) {
            let end = rest.find('>').unwrap();
            assert!(rest[..end].ends_with('/'), "{}", &rest[..end]);
        }
        for bad in [
            "NaN", "\"inf", ",inf", "inf,", "-inf", "<script", "<link", "src=", "http", "@import",
            "url(",
        ] {
            assert!(!html.contains(bad), "found {bad}");
        }
        for name in [
            "read p50",
            "read p99",
            "write p50",
            "write p99",
            "lock p50",
            "lock p99",
            "safe",
            "jeopardy",
            "expired",
        ] {
            assert!(
                html.contains(&format!("data-series=\"{name}\"")),
                "no series {name}"
            );
        }
        // Throughput series per operation.
        for name in ["read", "write", "lock"] {
            assert!(html.contains(&format!("data-series=\"{name}\"")));
        }
        // The write latency lines have a gap at second 4: two polylines each.
        let write_p50 = html.split("data-series=\"write p50\"").nth(1).unwrap();
        let write_p50 = &write_p50[..write_p50.find("</g>").unwrap()];
        assert_eq!(write_p50.matches("<polyline").count(), 2);
        // Text from the report is escaped.
        assert!(html.contains("127.0.0.1:1&lt;script&gt;&amp;"));
        assert!(html.contains("a &lt;b&gt;note&lt;/b&gt; &amp; more"));
        assert!(html.contains("Latency per second"));
        assert!(html.contains("Throughput per second"));
        assert!(html.contains("Session states"));
    }

    #[test]
    fn faults_are_marked_on_every_plot_and_listed() {
        let mut r = synthetic();
        r.faults = vec![
            crate::fault::FaultRecord {
                action: "kill".into(),
                member: "proxy".into(),
                at_s: 2.0,
                done_s: Some(2.1),
                error: None,
            },
            crate::fault::FaultRecord {
                action: "restart".into(),
                member: "master:<c1>".into(),
                at_s: 3.0,
                done_s: None,
                error: Some("it is running".into()),
            },
        ];
        let html = render(&r);
        // Only the fault that took effect is drawn, once per plot.
        assert_eq!(html.matches("<g class=\"fault\">").count(), 3, "{html}");
        assert_eq!(html.matches(">kill proxy</text>").count(), 3, "{html}");
        assert!(
            html.contains("<li>kill proxy at 2.0 s: done at 2.1 s</li>"),
            "{html}"
        );
        assert!(
            html.contains("<li>restart master:&lt;c1&gt; at 3.0 s: failed: it is running</li>"),
            "{html}"
        );
        assert!(balanced(&html, "g"));
    }

    #[test]
    fn the_reshard_has_its_section_and_its_marks() {
        use crate::reshard::{Pauses, PhaseOps, ReshardReport, WindowOp};
        let mut r = synthetic();
        let w = |p50, p99, count, errors| WindowOp {
            count,
            errors,
            p50_ms: Some(p50),
            p99_ms: Some(p99),
            max_ms: Some(p99),
        };
        let mut rs = ReshardReport {
            spec: "add-cell@3s".into(),
            cell: "c4".into(),
            cell_addr: "127.0.0.1:9<x>".into(),
            at_s: 3.0,
            cell_ready_s: Some(3.1),
            start_s: Some(3.2),
            end_s: Some(6.7),
            total_s: Some(3.5),
            job: Some("reshard-1".into()),
            state: "done".into(),
            slots_planned: 1024,
            slots_moved: 1024,
            write_pause: Some(Pauses {
                slots: 1024,
                p50_ms: 25,
                p99_ms: 84,
                max_ms: 90,
            }),
            held_locks: 32,
            held_locks_kept: 31,
            held_lock_problems: vec!["/loadtest/d3/held3: <gone>".into()],
            ..Default::default()
        };
        rs.ops.insert(
            "read".into(),
            PhaseOps {
                before: w(3.3, 9.9, 1000, 0),
                during: w(4.3, 42.25, 290, 1),
                after: WindowOp::default(),
            },
        );
        rs.errors_during = 1;
        rs.errors_during_by_code
            .insert("read/GetContentsAndStat:WRONG_CELL".into(), 1);
        r.reshard = Some(rs);
        let html = render(&r);
        assert!(html.contains("<h2>Reshard</h2>"), "{html}");
        assert!(
            html.contains("cell c4 (127.0.0.1:9&lt;x&gt;) added; job reshard-1 <b>done</b>: 1024 of 1024 slots moved"),
            "{html}"
        );
        assert!(html.contains("<b>3.5 s</b> in all"), "{html}");
        assert!(
            html.contains(
                "Write pause per slot (1024 slots): p50 25 ms, p99 <b>84 ms</b>, max 90 ms."
            ),
            "{html}"
        );
        assert!(
            html.contains("<tr><td>read</td><td>3.300</td><td>9.900</td><td>4.300</td><td>42.250</td><td>290</td><td>1</td><td>-</td><td>-</td></tr>"),
            "{html}"
        );
        assert!(
            html.contains("<li>1 × read/GetContentsAndStat:WRONG_CELL</li>"),
            "{html}"
        );
        assert!(html.contains("<b>31 of 32</b> still held"), "{html}");
        assert!(html.contains("/loadtest/d3/held3: &lt;gone&gt;"), "{html}");
        // The move's start and end on each of the three plots.
        assert_eq!(html.matches(">reshard starts</text>").count(), 3, "{html}");
        assert_eq!(html.matches(">reshard done</text>").count(), 3, "{html}");
        for tag in ["svg", "text", "g", "table", "p", "ul"] {
            assert!(balanced(&html, tag), "unbalanced <{tag}>");
        }
        // Without a reshard, no section.
        assert!(!render(&synthetic()).contains("Reshard"));
    }

    #[test]
    fn coordinates_stay_inside_the_plot() {
        let html = render(&synthetic());
        for rest in html.split("points=\"").skip(1) {
            let pts = &rest[..rest.find('"').unwrap()];
            for xy in pts.split(' ') {
                let (x, y) = xy.split_once(',').unwrap();
                let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                assert!((LEFT..=W - RIGHT).contains(&x), "x {x}");
                assert!((TOP..=H - BOTTOM).contains(&y), "y {y}");
            }
        }
    }

    #[test]
    fn server_processes_are_a_table_when_measured() {
        use crate::report::ProcessReport;
        assert!(!render(&synthetic()).contains("Server processes"));
        let mut r = synthetic();
        r.processes = vec![
            ProcessReport {
                member: "p1".into(),
                pid: Some(7),
                rss_bytes: Some(21 << 20),
                cpu_s: Some(0.5),
                window_s: 10.0,
                partial: None,
            },
            ProcessReport {
                member: "c1".into(),
                window_s: 10.0,
                partial: Some("no CPU figure: it was <restarted>".into()),
                ..Default::default()
            },
        ];
        let html = render(&r);
        assert!(html.contains("<th>member</th><th>RSS MiB</th><th>CPU % core</th>"));
        assert!(
            html.contains("<tr><td>p1</td><td>21.0</td><td>5.0</td>"),
            "{html}"
        );
        assert!(html.contains(
            "<tr><td>c1</td><td>-</td><td>-</td><td>-</td>\
             <td>no CPU figure: it was &lt;restarted&gt;</td></tr>"
        ));
        assert!(balanced(&html, "table") && balanced(&html, "tr"));
    }

    #[test]
    fn an_empty_report_renders_without_nan() {
        let html = render(&Report::default());
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("no samples"));
        assert!(!html.contains("NaN") && !html.contains("\"inf") && !html.contains(",inf"));
        assert!(balanced(&html, "svg") && balanced(&html, "text"));
    }

    #[test]
    fn axes_are_nice() {
        let close = |(t, s): (f64, f64), (t2, s2): (f64, f64)| {
            assert!(
                (t - t2).abs() < 1e-9 && (s - s2).abs() < 1e-9,
                "{t},{s} vs {t2},{s2}"
            );
        };
        close(axis(0.0), (1.0, 0.2));
        close(axis(f64::NAN), (1.0, 0.2));
        close(axis(10.0), (10.0, 2.0));
        close(axis(10.002), (10.0, 2.0));
        close(axis(37.0), (40.0, 10.0));
        close(axis(0.73), (0.8, 0.2));
        close(axis(1234.0), (1500.0, 500.0));
        assert_eq!(fmt_num(0.2), "0.2");
        assert_eq!(fmt_num(40.0), "40");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
