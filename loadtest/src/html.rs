//! `--html`: the report as one self-contained HTML page (no scripts, fonts or network): the
//! run's metadata, the operations and member tables, and inline SVG plots of its timeline
//! (offered against achieved rate, latency percentiles, errors and retries, session states)
//! that scale to the page's width (docs/loadtest.md, "The HTML report"); and `compare
//! --html`'s page, both runs side by side with their ratios ([`render_comparison`]). Plain
//! string building; every piece of text from the report is escaped.

use crate::report::{Ratios, Report, MEMBER_TABLE_HEADER, MEMBER_TABLE_TITLE, OP_TABLE_HEADER};
use std::fmt::Write as _;

/// Plot width in SVG user units: the `viewBox`'s; the page scales it to its own width.
const W: f64 = 960.0;
/// Height of the plotting area itself.
const PLOT_H: f64 = 230.0;
/// Margins around the plotting area (the top one holds the title and the legend's rows).
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const BOTTOM: f64 = 48.0;
/// The title's band, and each legend row's, at the top.
const TITLE_H: f64 = 28.0;
const LEGEND_ROW_H: f64 = 20.0;
/// Dash patterns: p99 and offered rates dashed, p99.9 dotted.
const DASHED: Option<&str> = Some("6 4");
const DOTTED: Option<&str> = Some("1.5 3");
/// Most points a series may have and still get a marker on each.
const MARKERS_UP_TO: usize = 120;

/// Colours of the operation kinds, in report order, then for any other kind.
const OP_COLOURS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];
const OTHER_COLOURS: [&str; 4] = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

/// One line on a plot: `(x, y)` points, `None` where there is no value (a gap).
struct Series {
    name: String,
    colour: &'static str,
    /// `stroke-dasharray`, or `None` for a solid line.
    dash: Option<&'static str>,
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
    // The legend in rows under the title, as many as its entries need.
    let mut legend = Vec::new();
    let (mut lx, mut row) = (LEFT, 0.0);
    for se in series {
        let width = 29.0 + 7.0 * se.name.chars().count() as f64 + 18.0;
        if lx > LEFT && lx + width > W - RIGHT {
            (lx, row) = (LEFT, row + 1.0);
        }
        legend.push((lx, TITLE_H + LEGEND_ROW_H * row + 10.0));
        lx += width;
    }
    let rows = if series.is_empty() { 0.0 } else { row + 1.0 };
    let top = TITLE_H + LEGEND_ROW_H * rows + 14.0;
    let h = top + PLOT_H + BOTTOM;
    let (pw, ph) = (W - LEFT - RIGHT, PLOT_H);

    let sx = |x: f64| LEFT + x.clamp(0.0, x_top) / x_top * pw;
    let sy = |y: f64| top + ph - y.clamp(0.0, y_top) / y_top * ph;

    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="plot" viewBox="0 0 {W} {h:.0}" preserveAspectRatio="xMidYMid meet" role="img" aria-label="{t}">"##,
        t = escape(title)
    );
    let _ = write!(
        s,
        r##"<rect x="0" y="0" width="{W}" height="{h:.0}" fill="#ffffff"/>"##
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
            top + ph,
            top + ph + 5.0,
            top + ph + 18.0,
            fmt_num(v)
        );
        k += 1.0;
    }
    // Axes and their labels.
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{:.1}" stroke="#333"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        top + ph,
        top + ph,
        LEFT + pw,
        top + ph
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
        LEFT + pw / 2.0,
        h - 8.0,
        escape(x_label)
    );
    let _ = write!(
        s,
        r##"<text x="16" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
        top + ph / 2.0,
        top + ph / 2.0,
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
            top + ph / 2.0
        );
    }
    // The faults: a dotted line and a label at each.
    for (x, label) in marks.iter().filter(|m| m.0.is_finite()) {
        let x = sx(*x);
        let _ = write!(
            s,
            r##"<g class="fault"><line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#7f7f7f" stroke-width="1.5" stroke-dasharray="2 3"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#555">{}</text></g>"##,
            top + ph,
            x + 3.0,
            top + 12.0,
            escape(label)
        );
    }
    // The series: one polyline per unbroken run of values, markers when there are few.
    for se in series {
        let dash = se
            .dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
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
    // The legend, in rows under the title.
    for (se, (lx, ly)) in series.iter().zip(legend) {
        let dash = se
            .dash
            .map(|d| format!(r#" stroke-dasharray="{d}""#))
            .unwrap_or_default();
        let _ = write!(
            s,
            r##"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"##,
            lx + 24.0,
            se.colour,
            lx + 29.0,
            ly + 4.0,
            escape(&se.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The operation kinds the plots show: those requested or seen, in report order.
fn plotted_ops(r: &Report) -> Vec<String> {
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
            r.rate_of(n) > 0.0
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

/// A count over an interval as a rate (0 for an empty interval).
fn per_s(n: u64, dt: f64) -> f64 {
    crate::report::throughput(n, dt)
}

/// The four plots: offered against achieved rate, latency percentiles, errors and retries,
/// and session states over time.
fn plots(r: &Report) -> [String; 4] {
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
    let (mut rate, mut latency, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let series =
        |name: String, colour, dash, f: &dyn Fn(&crate::report::TimelineSample) -> Option<f64>| {
            Series {
                name,
                colour,
                dash,
                points: r.timeline.iter().map(|t| (t.t_s, f(t))).collect(),
            }
        };
    for (i, name) in ops.iter().enumerate() {
        let colour = op_colour(i);
        let op = |t: &crate::report::TimelineSample| t.ops.get(name).cloned().unwrap_or_default();
        rate.push(series(format!("{name} offered"), colour, DASHED, &|t| {
            Some(op(t).offered_per_s(t.dt_s))
        }));
        rate.push(series(format!("{name} achieved"), colour, None, &|t| {
            Some(op(t).throughput_per_s)
        }));
        latency.push(series(format!("{name} p50"), colour, None, &|t| {
            op(t).p50_ms
        }));
        latency.push(series(format!("{name} p99"), colour, DASHED, &|t| {
            op(t).p99_ms
        }));
        latency.push(series(format!("{name} p99.9"), colour, DOTTED, &|t| {
            op(t).p999_ms
        }));
        errors.push(series(format!("{name} errors"), colour, None, &|t| {
            Some(per_s(op(t).errors, t.dt_s))
        }));
    }
    errors.push(series(
        "session call errors".into(),
        "#9467bd",
        None,
        &|t| Some(per_s(t.session_errors, t.dt_s)),
    ));
    errors.push(series("retries".into(), "#7f7f7f", DASHED, &|t| {
        Some(per_s(t.retries, t.dt_s))
    }));
    // Expired is dashed so that jeopardy shows through where both are 0.
    let sessions = vec![
        series("lease current".into(), "#2ca02c", None, &|t| {
            Some(t.sessions.current as f64)
        }),
        series("in jeopardy".into(), "#ff7f0e", None, &|t| {
            Some(t.sessions.jeopardy as f64)
        }),
        series("expired (so far)".into(), "#d62728", DASHED, &|t| {
            Some(t.sessions.expired as f64)
        }),
    ];
    [
        plot(
            "Offered (dashed) and achieved (solid) operations per second",
            x_label,
            "operations/s",
            &rate,
            &marks,
        ),
        plot(
            "Latency per second (p50 solid, p99 dashed, p99.9 dotted)",
            x_label,
            "latency (ms)",
            &latency,
            &marks,
        ),
        plot(
            "Errors and retries per second",
            x_label,
            "calls/s",
            &errors,
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

/// The page's style: plots and tables fit the page's width (the plots scale with their
/// `viewBox`; long addresses and command lines wrap rather than widen the page).
const STYLE: &str = "\
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1600px; overflow-wrap: break-word; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 15px; }
.wide { max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
table.meta th, table.meta td { text-align: left; vertical-align: top; white-space: normal; }
table.meta th { white-space: nowrap; }
table.members td:nth-child(-n+4), table.members th:nth-child(-n+4) { text-align: left; }
table.members td:last-child { text-align: left; white-space: normal; }
.sides { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 24px; }
.side { min-width: 0; }
.side table { font-size: 13px; }
.side th, .side td { padding: 2px 4px; }
code, li, .note { overflow-wrap: anywhere; }
code { font-size: 90%; }
svg.plot { display: block; box-sizing: border-box; width: 100%; height: auto; margin: 12px 0; border: 1px solid #ddd; font-family: sans-serif; }
.note { color: #8a5a00; }
";

/// A `<tr>` of `cells` (`th` or `td`), each escaped.
fn table_row(s: &mut String, tag: &str, cells: &[String]) {
    s.push_str("<tr>");
    for c in cells {
        let _ = write!(s, "<{tag}>{}</{tag}>", escape(c));
    }
    s.push_str("</tr>\n");
}

/// The run's metadata: date, version, command line, the deployment's shape, the target and
/// the workload.
fn run_section(s: &mut String, r: &Report) {
    let not_recorded = || "not recorded (a report from an older version)".to_string();
    let run = r.run.as_ref();
    s.push_str(
        "<section id=\"run\">\n<h2>Run</h2>\n<div class=\"wide\">\
         <table class=\"meta\" id=\"run-metadata\">\n",
    );
    let mut row = |name: &str, value: String, code: bool| {
        let value = if code {
            format!("<code>{}</code>", escape(&value))
        } else {
            escape(&value)
        };
        let _ = writeln!(s, "<tr><th>{name}</th><td>{value}</td></tr>");
    };
    row(
        "date",
        run.map_or_else(not_recorded, |i| i.started_at.clone()),
        false,
    );
    row(
        "version",
        run.map_or_else(not_recorded, |i| i.version.clone()),
        false,
    );
    row(
        "command",
        run.map_or_else(not_recorded, |i| i.command.clone()),
        true,
    );
    row(
        "deployment",
        run.map_or_else(not_recorded, |i| i.deployment.describe()),
        false,
    );
    row("target", target_text(r), false);
    row("workload", workload_text(r), false);
    row("window", window_text(r), false);
    s.push_str("</table></div>\n</section>\n");
}

/// The run's target: tier, addresses, connections and sessions per client.
fn target_text(r: &Report) -> String {
    format!(
        "{} {} ({} connection{}, {} session{} per client)",
        r.target,
        r.addresses.join(", "),
        r.connections,
        if r.connections == 1 { "" } else { "s" },
        r.sessions_per_client.max(1),
        if r.sessions_per_client > 1 { "s" } else { "" },
    )
}

/// The run's workload: sessions, rates, files and their popularity.
fn workload_text(r: &Report) -> String {
    format!(
        "{} sessions; read {}/s, write {}/s, lock {}/s (open-loop, Poisson) over {} files \
         in {} directories, Zipf s={}",
        r.sessions.target,
        r.read_rate,
        r.write_rate,
        r.lock_rate,
        r.files,
        r.dirs.unwrap_or(crate::workload::DIRS),
        r.zipf
    )
}

/// The run's window: the ramp, then the measured time.
fn window_text(r: &Report) -> String {
    format!(
        "ramp {:.1} s, then measured {:.1} s",
        r.ramp_s, r.duration_s
    )
}

/// The member table ([`Report::member_rows`]) and the load generator's own cost.
fn members_section(s: &mut String, r: &Report) {
    if r.member_rows().is_empty() && r.load_generator.is_none() {
        return;
    }
    s.push_str("<section id=\"members\">\n<h2>Members</h2>\n");
    members_body(s, r, "member-table");
    s.push_str("</section>\n");
}

/// The member table (`<table id="TABLE_ID">`, when there are members) and the load
/// generator's cost: the Members section's body, and part of each side of a comparison.
fn members_body(s: &mut String, r: &Report, table_id: &str) {
    let rows = r.member_rows();
    if !rows.is_empty() {
        let mut title = MEMBER_TABLE_TITLE.to_string();
        if let Some(first) = title.get(..1) {
            title = first.to_uppercase() + &title[1..];
        }
        let _ = writeln!(
            s,
            "<p>{}.</p>\n<div class=\"wide\"><table id=\"{table_id}\" class=\"members\">",
            escape(&title)
        );
        let header: Vec<String> = MEMBER_TABLE_HEADER
            .iter()
            .chain(&["partial"])
            .map(|c| c.to_string())
            .collect();
        table_row(s, "th", &header);
        for m in &rows {
            let mut cells = m.figures(r.ops_total).to_vec();
            cells.push(
                m.process
                    .as_ref()
                    .and_then(|p| p.partial.clone())
                    .unwrap_or_default(),
            );
            table_row(s, "td", &cells);
        }
        s.push_str("</table></div>\n");
    }
    if let Some(g) = &r.load_generator {
        let [_, cpu, per_op] = g.table_figures(r.ops_total);
        let _ = writeln!(
            s,
            "<p>Load generator (the process measuring): CPU {cpu} % of a core, {per_op} µs/op.</p>"
        );
    }
}

/// The operations table (`<table id="TABLE_ID">`), the sessions' and the errors' lines
/// of `r`: the body of the report's Operations section, and of each side of a comparison.
fn operations_body(s: &mut String, r: &Report, table_id: &str) {
    let _ = writeln!(s, "<div class=\"wide\"><table id=\"{table_id}\">");
    table_row(s, "th", &OP_TABLE_HEADER.map(String::from));
    for (name, o) in r.shown_ops() {
        let mut cells = vec![name.clone()];
        cells.extend(o.table_figures());
        table_row(s, "td", &cells);
    }
    let _ = writeln!(
        s,
        "<tr><td>total</td><td>{}</td><td>{}</td><td>{:.1}</td><td colspan=\"5\"></td></tr>\n</table></div>",
        r.ops_total, r.errors, r.throughput_per_s
    );
    let ss = &r.sessions;
    let _ = writeln!(
        s,
        "<p>Sessions: {} created ({} create errors), {} KeepAlive replies ({} errors); \
         {} jeopardy episodes, {} back to safe (Safe events), {} expired; {} closed. \
         Arrivals dropped: {}. acked_lost: {}{}.</p>",
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
    if r.lock_rate > 0.0 || !r.locks.is_empty() {
        let _ = writeln!(
            s,
            "<p>Lock check: {} acquisitions, {} overlapping holders, {} stale sequencers.</p>",
            r.locks.acquired, r.locks.overlaps, r.locks.stale_sequencers
        );
    }
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
}

/// The page's head, its style and its `<h1>TITLE</h1>`, up to the first section.
fn page_start(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
         <h1>{title}</h1>\n"
    )
}

/// `warren loadtest compare`'s report as a self-contained HTML page: the run's metadata
/// (date, version, command line, each side's deployment, the workload), the ratios of
/// the run through the proxies to the direct run, and the two runs side by side (each
/// with its operations, members and plots; one above the other in a narrow window).
pub fn render_comparison(direct: &Report, proxies: &Report, ratios: &Ratios) -> String {
    let mut s = page_start("warren loadtest compare report");
    let not_recorded = || "not recorded".to_string();
    let run = direct.run.as_ref().or(proxies.run.as_ref());
    s.push_str(
        "<section id=\"run\">\n<h2>Run</h2>\n<div class=\"wide\">\
         <table class=\"meta\" id=\"run-metadata\">\n",
    );
    let rows = [
        (
            "date",
            run.map_or_else(not_recorded, |i| i.started_at.clone()),
        ),
        (
            "version",
            run.map_or_else(not_recorded, |i| i.version.clone()),
        ),
        (
            "command",
            run.map_or_else(not_recorded, |i| i.command.clone()),
        ),
        (
            "deployment, direct",
            direct
                .run
                .as_ref()
                .map_or_else(not_recorded, |i| i.deployment.describe()),
        ),
        (
            "deployment, through the proxies",
            proxies
                .run
                .as_ref()
                .map_or_else(not_recorded, |i| i.deployment.describe()),
        ),
        ("workload", workload_text(direct)),
        ("window", window_text(direct)),
    ];
    for (name, value) in rows {
        let value = match name {
            "command" => format!("<code>{}</code>", escape(&value)),
            _ => escape(&value),
        };
        let _ = writeln!(s, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    s.push_str("</table></div>\n</section>\n");

    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    s.push_str(
        "<section id=\"ratios\">\n<h2>Through the proxies ÷ direct to the cells</h2>\n\
         <p>Per operation: the run through the proxies' figure divided by the direct run's \
         (below 1: lower latency or less throughput through the proxies; - when either run \
         has none).</p>\n<div class=\"wide\"><table id=\"ratio-table\">\n",
    );
    table_row(
        &mut s,
        "th",
        &["op", "p50", "p99", "throughput"].map(String::from),
    );
    // An operation neither run made (no lock asked for) has no row.
    for (name, o) in ratios
        .ops
        .iter()
        .filter(|(_, o)| o.p50.is_some() || o.p99.is_some() || o.throughput.is_some())
    {
        table_row(
            &mut s,
            "td",
            &[name.clone(), f(o.p50), f(o.p99), f(o.throughput)],
        );
    }
    s.push_str(
        "</table></div>\n<p>What reaches the cells (summed over the scraped cells), and how \
         many times less of it through the proxies.</p>\n<div class=\"wide\">\
         <table id=\"cell-load\">\n",
    );
    table_row(
        &mut s,
        "th",
        &[
            "at the cells",
            "direct",
            "through the proxies",
            "direct ÷ proxies",
        ]
        .map(String::from),
    );
    let per_s = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    table_row(
        &mut s,
        "td",
        &[
            "KeepAlives/s".into(),
            per_s(ratios.cell_keepalives_per_s_direct),
            per_s(ratios.cell_keepalives_per_s_proxies),
            f(ratios.cell_keepalive_reduction),
        ],
    );
    table_row(
        &mut s,
        "td",
        &[
            "RPCs/s".into(),
            per_s(ratios.cell_rpc_per_s_direct),
            per_s(ratios.cell_rpc_per_s_proxies),
            f(ratios.cell_rpc_reduction),
        ],
    );
    table_row(
        &mut s,
        "td",
        &[
            "failed calls".into(),
            ratios.errors_direct.to_string(),
            ratios.errors_proxies.to_string(),
            "-".into(),
        ],
    );
    s.push_str("</table></div>\n</section>\n");

    s.push_str("<section id=\"sides\">\n<div class=\"sides\">\n");
    for (id, title, r) in [
        ("direct", "Direct to the cells", direct),
        ("proxies", "Through the proxies", proxies),
    ] {
        let _ = writeln!(
            s,
            "<div class=\"side\" id=\"side-{id}\">\n<h2>{title}</h2>\n<p>Target: {}.</p>",
            escape(&target_text(r))
        );
        operations_body(&mut s, r, &format!("op-table-{id}"));
        members_body(&mut s, r, &format!("member-table-{id}"));
        for n in &r.notes {
            let _ = writeln!(s, "<p class=\"note\">Note: {}</p>", escape(n));
        }
        for p in plots(r) {
            s.push_str(&p);
            s.push('\n');
        }
        s.push_str("</div>\n");
    }
    s.push_str("</div>\n</section>\n</body>\n</html>\n");
    s
}

/// The report as a self-contained HTML page.
pub fn render(r: &Report) -> String {
    let mut s = page_start("warren loadtest report");
    run_section(&mut s, r);
    s.push_str("<section id=\"operations\">\n<h2>Operations</h2>\n");
    operations_body(&mut s, r, "op-table");
    s.push_str("</section>\n");
    members_section(&mut s, r);
    if let Some(rs) = &r.reshard {
        reshard_section(&mut s, r, rs);
    }
    for n in &r.notes {
        let _ = writeln!(s, "<p class=\"note\">Note: {}</p>", escape(n));
    }
    s.push_str(
        "<section id=\"plots\">\n<h2>Over time</h2>\n<p>One sample a second of the measured \
         window (and of the drain after it); operations count in the second they completed \
         in, their latency from their intended send time. <i>Offered</i>: arrivals meant to \
         start in that second (sent or dropped); <i>achieved</i>: operations that succeeded \
         in it. Session states: <i>lease current</i>, live sessions with a current lease; \
         <i>in jeopardy</i>, live sessions whose lease ran out locally with no KeepAlive \
         reply yet; <i>expired</i>, sessions expired so far. (The summary's <i>back to \
         safe</i> counts Safe events: jeopardy episodes that ended well.)</p>\n",
    );
    for p in plots(r) {
        s.push_str(&p);
        s.push('\n');
    }
    s.push_str("</section>\n</body>\n</html>\n");
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
                    current: 50 - k % 3,
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
                let mut interval = IntervalOp::new(&h, k % 2, 1.0);
                interval.offered = rate + k + 2;
                t.ops.insert(name.into(), interval);
            }
            t.retries = k % 3;
            t.session_errors = u64::from(k == 5);
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

    /// Text of an HTML fragment: tags dropped, the entities [`escape`] writes decoded.
    fn text_of(fragment: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in fragment.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        html_escape::decode_html_entities(&out).into_owned()
    }

    /// The rows of the `<table id="ID">`, each a list of its cells' text (`th` and `td`):
    /// a small structural parse of the page this module writes, rows by `<tr>`, cells by
    /// `<th>`/`<td>`.
    fn table(html: &str, id: &str) -> Vec<Vec<String>> {
        let open = format!("id=\"{id}\"");
        let start = html
            .find(&open)
            .unwrap_or_else(|| panic!("no table {id} in {html}"));
        assert!(
            html[..start].ends_with("<table ") || html[..start].ends_with("class=\"meta\" "),
            "{id} is not a table's id"
        );
        let body = &html[start..];
        let body = &body[..body.find("</table>").expect("the table ends")];
        body.split("<tr>")
            .skip(1)
            .map(|row| {
                let row = &row[..row.find("</tr>").expect("the row ends")];
                let mut cells = Vec::new();
                let mut rest = row;
                while let Some(i) = rest.find("<t") {
                    let tag = &rest[i + 1..i + 3];
                    let after = &rest[i..];
                    let content_start = after.find('>').expect("the cell's tag ends") + 1;
                    let close = format!("</{tag}>");
                    let end = after.find(&close).expect("the cell ends");
                    cells.push(text_of(&after[content_start..end]));
                    rest = &after[end + close.len()..];
                }
                cells
            })
            .collect()
    }

    /// The `<section id="ID">…</section>` of the page.
    fn section<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html
            .find(&format!("<section id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no section {id}"));
        let body = &html[start..];
        &body[..body.find("</section>").expect("the section ends")]
    }

    #[test]
    fn renders_four_plots_with_every_series() {
        let r = synthetic();
        let html = render(&r);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<svg").count(), 4, "{html}");
        assert_eq!(html.matches("</svg>").count(), 4);
        for tag in [
            "svg", "text", "g", "polyline", "table", "p", "section", "tr",
        ] {
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
        for op in ["read", "write", "lock"] {
            for kind in ["p50", "p99", "p99.9", "offered", "achieved", "errors"] {
                let name = format!("{op} {kind}");
                assert!(
                    html.contains(&format!("data-series=\"{name}\"")),
                    "no series {name}"
                );
            }
        }
        for name in [
            "retries",
            "session call errors",
            "lease current",
            "in jeopardy",
            "expired (so far)",
        ] {
            assert!(
                html.contains(&format!("data-series=\"{name}\"")),
                "no series {name}"
            );
        }
        // p99.9 is dotted, p99 dashed, p50 solid.
        let style_of = |name: &str| {
            let g = html
                .split(&format!("data-series=\"{name}\""))
                .nth(1)
                .unwrap();
            let line = &g[..g.find("/>").unwrap()];
            line.split("stroke-dasharray=\"")
                .nth(1)
                .map(|d| d[..d.find('"').unwrap()].to_string())
        };
        assert_eq!(style_of("read p50"), None);
        assert_eq!(style_of("read p99").as_deref(), DASHED);
        assert_eq!(style_of("read p99.9").as_deref(), DOTTED);
        assert_eq!(style_of("read offered").as_deref(), DASHED);
        // The write latency lines have a gap at second 4: two polylines each.
        for name in ["write p50", "write p99.9"] {
            let g = html
                .split(&format!("data-series=\"{name}\""))
                .nth(1)
                .unwrap();
            let g = &g[..g.find("</g>").unwrap()];
            assert_eq!(g.matches("<polyline").count(), 2, "{name}");
        }
        // Text from the report is escaped.
        assert!(html.contains("127.0.0.1:1&lt;script&gt;&amp;"));
        assert!(html.contains("a &lt;b&gt;note&lt;/b&gt; &amp; more"));
        for title in [
            "Offered (dashed) and achieved (solid) operations per second",
            "Latency per second (p50 solid, p99 dashed, p99.9 dotted)",
            "Errors and retries per second",
            "Session states",
        ] {
            assert!(html.contains(title), "no plot {title}");
        }
    }

    /// `compare`'s page: the metadata with each side's deployment, the ratio tables, and
    /// both runs in their own column, each with its operations table and four plots; the
    /// ids of the tables differ between the columns; text is escaped.
    #[test]
    fn the_comparison_has_both_runs_side_by_side_and_the_ratios() {
        use crate::report::{DeploymentShape, RunInfo};
        let mut direct = synthetic();
        direct.target = "cells".into();
        let mut proxies = synthetic();
        let args = ["warren", "loadtest", "compare", "--meta", "a b"].map(String::from);
        let info = |proxies_n| {
            RunInfo::starting_now(
                &args,
                "0.1.0 (abc)".into(),
                DeploymentShape {
                    proxies: proxies_n,
                    ..Default::default()
                },
            )
        };
        direct.run = Some(info(None));
        proxies.run = Some(info(Some(3)));
        let ratios = Ratios::of(&proxies, &direct);
        let html = render_comparison(&direct, &proxies, &ratios);
        for tag in ["svg", "table", "p", "section", "tr", "div"] {
            assert!(balanced(&html, tag), "unbalanced <{tag}>");
        }
        assert!(!html.contains("<script") && !html.contains("NaN"));
        let run = table(&html, "run-metadata");
        let names: Vec<&str> = run.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            names,
            [
                "date",
                "version",
                "command",
                "deployment, direct",
                "deployment, through the proxies",
                "workload",
                "window"
            ]
        );
        assert_eq!(run[2][1], "warren loadtest compare --meta 'a b'");
        assert!(run[3][1].contains("proxies not known"), "{:?}", run[3]);
        assert!(run[4][1].contains("3 proxies"), "{:?}", run[4]);
        let ratio_rows = table(&html, "ratio-table");
        assert_eq!(ratio_rows[0], ["op", "p50", "p99", "throughput"]);
        // The same runs: every ratio is 1.
        let read = ratio_rows.iter().find(|r| r[0] == "read").expect("read");
        assert_eq!(read[1..], ["1.00", "1.00", "1.00"]);
        let load = table(&html, "cell-load");
        assert_eq!(load[3][..3], ["failed calls", "0", "0"]);
        for id in ["direct", "proxies"] {
            let side = &html[html
                .find(&format!("<div class=\"side\" id=\"side-{id}\">"))
                .unwrap_or_else(|| panic!("no column {id}"))..];
            let ops = table(side, &format!("op-table-{id}"));
            assert_eq!(ops[0][0], "op");
            assert!(ops.iter().any(|r| r[0] == "read"));
            let column = &side[..side.find("</svg>\n</div>").expect("the column ends")];
            assert_eq!(column.matches("<svg").count(), 4, "{id}");
        }
        assert!(html.contains("127.0.0.1:1&lt;script&gt;&amp;"));
    }

    #[test]
    fn plots_scale_to_the_page_width() {
        let html = render(&synthetic());
        let css = &html[html.find("<style>").unwrap()..html.find("</style>").unwrap()];
        assert!(
            css.contains(
                "svg.plot { display: block; box-sizing: border-box; width: 100%; height: auto;"
            ),
            "{css}"
        );
        for svg in html.split("<svg").skip(1) {
            let tag = &svg[..svg.find('>').unwrap()];
            // A viewBox and no fixed size of its own.
            assert!(tag.contains("viewBox=\"0 0 960 "), "{tag}");
            assert!(
                !tag.contains(" width=") && !tag.contains(" height="),
                "{tag}"
            );
        }
        // No fixed pixel width anywhere on the page.
        assert!(
            !html.contains("px;\"") && !css.contains("width: 9"),
            "{css}"
        );
    }

    #[test]
    fn the_run_section_has_the_metadata() {
        use crate::report::{DeploymentShape, RunInfo};
        let mut r = synthetic();
        // Without metadata (a report from an older version), the rows say so.
        let rows = table(&render(&r), "run-metadata");
        assert_eq!(rows[0][0], "date");
        assert!(rows[0][1].starts_with("not recorded"), "{rows:?}");
        r.run = Some(RunInfo {
            started_at: "2026-12-07T04:13:22Z".into(),
            version: "0.1.0 (abc1234)".into(),
            command: "warren loadtest run --deploy 'dev:cells=2,proxies=1' --html '<r>.html'"
                .into(),
            deployment: DeploymentShape {
                launched: true,
                cells: Some(2),
                proxies: Some(1),
                lease: Some("2s".into()),
                store: Some("embedded, one replica per cell".into()),
                tls: true,
            },
        });
        let html = render(&r);
        let run = section(&html, "run");
        assert!(run.contains("<h2>Run</h2>"), "{run}");
        let rows = table(&html, "run-metadata");
        let field = |name: &str| {
            rows.iter()
                .find(|row| row[0] == name)
                .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))[1]
                .clone()
        };
        assert_eq!(field("date"), "2026-12-07T04:13:22Z");
        assert_eq!(field("version"), "0.1.0 (abc1234)");
        assert_eq!(
            field("command"),
            "warren loadtest run --deploy 'dev:cells=2,proxies=1' --html '<r>.html'"
        );
        assert!(
            html.contains("<code>warren loadtest run --deploy &#x27;dev"),
            "{run}"
        );
        assert_eq!(
            field("deployment"),
            "launched by the load test (--deploy): 2 data cells and a meta cell, 1 proxy, \
             lease 2s, store embedded, one replica per cell, TLS on"
        );
        assert!(field("target").starts_with("proxies 127.0.0.1:1<script>&"));
        assert!(field("workload").contains("read 50/s, write 5/s, lock 1/s"));
    }

    #[test]
    fn the_operations_table_has_p999_and_leaves_out_unasked_kinds() {
        let mut r = synthetic();
        let rows = table(&render(&r), "op-table");
        assert_eq!(rows[0], OP_TABLE_HEADER.map(String::from).to_vec());
        assert!(rows[0].contains(&"p99.9 ms".to_string()));
        let names: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
        assert_eq!(names, ["lock", "read", "write", "total"]);
        // No lock asked for and none ran: no lock row, no lock check, no lock lines.
        r.lock_rate = 0.0;
        r.ops.insert("lock".into(), OpReport::default());
        for t in &mut r.timeline {
            t.ops.insert("lock".into(), IntervalOp::default());
        }
        let html = render(&r);
        let rows = table(&html, "op-table");
        let names: Vec<&str> = rows[1..].iter().map(|row| row[0].as_str()).collect();
        assert_eq!(names, ["read", "write", "total"]);
        assert!(!html.contains("Lock check"), "{html}");
        assert!(!html.contains("data-series=\"lock"), "{html}");
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
        assert_eq!(html.matches("<g class=\"fault\">").count(), 4, "{html}");
        assert_eq!(html.matches(">kill proxy</text>").count(), 4, "{html}");
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
        // The move's start and end on each of the four plots.
        assert_eq!(html.matches(">reshard starts</text>").count(), 4, "{html}");
        assert_eq!(html.matches(">reshard done</text>").count(), 4, "{html}");
        for tag in ["svg", "text", "g", "table", "p", "ul"] {
            assert!(balanced(&html, tag), "unbalanced <{tag}>");
        }
        // Without a reshard, no section.
        assert!(!render(&synthetic()).contains("Reshard"));
    }

    #[test]
    fn coordinates_stay_inside_the_plot() {
        // Many series: the legend takes several rows, and the plotting area moves down.
        let html = render(&synthetic());
        for svg in html.split("<svg").skip(1) {
            let view = svg.split("viewBox=\"0 0 960 ").nth(1).unwrap();
            let h: f64 = view[..view.find('"').unwrap()].parse().unwrap();
            let top = h - BOTTOM - PLOT_H;
            assert!(top >= TITLE_H + LEGEND_ROW_H, "top {top}");
            let svg = &svg[..svg.find("</svg>").unwrap()];
            for rest in svg.split("points=\"").skip(1) {
                let pts = &rest[..rest.find('"').unwrap()];
                for xy in pts.split(' ') {
                    let (x, y) = xy.split_once(',').unwrap();
                    let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                    assert!((LEFT..=W - RIGHT).contains(&x), "x {x}");
                    assert!((top..=h - BOTTOM).contains(&y), "y {y} outside {top}..{h}");
                }
            }
            // Every legend entry starts inside the plot's width, above the plotting area.
            for rest in svg.split("<line x1=\"").skip(1) {
                let tag = &rest[..rest.find("/>").unwrap()];
                if !tag.contains("stroke-width=\"2\"") {
                    continue;
                }
                let x: f64 = tag[..tag.find('"').unwrap()].parse().unwrap();
                let x2 = tag.split("x2=\"").nth(1).unwrap();
                let x2: f64 = x2[..x2.find('"').unwrap()].parse().unwrap();
                assert!(x >= LEFT && x2 <= W - RIGHT, "legend {tag}");
            }
        }
    }

    #[test]
    fn the_member_table_names_every_member() {
        use crate::metrics::EndpointReport;
        use crate::report::{MemberInfo, ProcessReport};
        assert!(!render(&synthetic()).contains("id=\"member-table\""));
        let mut r = synthetic();
        let member = |name: &str, role: &str, port: u16| MemberInfo {
            name: name.into(),
            role: role.into(),
            addr: format!("127.0.0.1:{port}"),
            admin: Some(format!("127.0.0.1:{}", port + 80)),
            store: None,
        };
        r.members = vec![
            member("meta", "meta", 7100),
            member("c1", "cell", 7101),
            member("p1", "proxy", 7201),
        ];
        let endpoint = |admin: &str, role: &str| EndpointReport {
            admin: admin.into(),
            role: role.into(),
            window_s: 12.0,
            rpc_per_s: Some(40.0),
            proxy_rpc_per_s: Some(55.5),
            cell_keepalives_per_s: Some(0.5),
            client_keepalives_per_s: Some(8.25),
        };
        r.endpoints = vec![
            endpoint("127.0.0.1:7181", "cell"),
            endpoint("127.0.0.1:7281", "proxy"),
            // Scraped, but no member is known by it.
            endpoint("127.0.0.1:9999", "proxy+cell"),
        ];
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
        assert!(section(&html, "members").contains("<h2>Members</h2>"));
        let rows = table(&html, "member-table");
        let mut header = MEMBER_TABLE_HEADER.map(String::from).to_vec();
        header.push("partial".into());
        assert_eq!(rows[0], header);
        let row = |name: &str| {
            rows.iter()
                .find(|row| row[0] == name)
                .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
                .clone()
        };
        // meta: its endpoint was not scraped, no process figures.
        assert_eq!(
            row("meta"),
            [
                "meta",
                "meta",
                "127.0.0.1:7100",
                "127.0.0.1:7180",
                "-",
                "-",
                "-",
                "-",
                "-",
                ""
            ]
        );
        // A cell: the cell tier's RPCs and the KeepAlives reaching it.
        assert_eq!(
            row("c1"),
            [
                "c1",
                "cell",
                "127.0.0.1:7101",
                "127.0.0.1:7181",
                "40.0",
                "0.50",
                "-",
                "-",
                "-",
                "no CPU figure: it was <restarted>"
            ]
        );
        // A proxy: the proxy tier's RPCs and its clients' KeepAlives; CPU 0.5 s over 10 s.
        assert_eq!(
            row("p1"),
            [
                "p1",
                "proxy",
                "127.0.0.1:7201",
                "127.0.0.1:7281",
                "55.5",
                "8.25",
                "5.0",
                "21.0",
                format!("{:.1}", 0.5e6 / r.ops_total as f64).as_str(),
                ""
            ]
        );
        // The endpoint no member is known by: its admin address, both tiers' RPCs.
        let unknown = rows.iter().find(|row| row[3] == "127.0.0.1:9999").unwrap();
        assert_eq!(
            unknown[..6],
            ["-", "proxy+cell", "-", "127.0.0.1:9999", "95.5", "8.25"]
        );
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert!(balanced(&html, "table") && balanced(&html, "tr"));
        // The terminal has the same table, the members named (no bare ports).
        let text = r.summary();
        assert!(text.contains(crate::report::MEMBER_TABLE_TITLE), "{text}");
        let line = text
            .lines()
            .find(|l| l.starts_with("p1 "))
            .expect("a p1 line");
        assert!(
            line.split_whitespace().eq([
                "p1",
                "proxy",
                "127.0.0.1:7201",
                "127.0.0.1:7281",
                "55.5",
                "8.25",
                "5.0",
                "21.0"
            ]
            .into_iter()
            .chain([format!("{:.1}", 0.5e6 / r.ops_total as f64).as_str()])),
            "{line}"
        );
        assert!(
            text.contains("(partial: no CPU figure: it was <restarted>)"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_report_renders_without_nan() {
        let html = render(&Report::default());
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("no samples"));
        assert!(!html.contains("NaN") && !html.contains("\"inf") && !html.contains(",inf"));
        assert!(balanced(&html, "svg") && balanced(&html, "text") && balanced(&html, "section"));
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
            "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
