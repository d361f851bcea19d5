//! The HTML status page (docs/operations.md, "Status page"): what the meta cell's and every
//! proxy's admin endpoint shows at `/status` to a browser. This module is the pure part:
//! the page's data ([`StatusPage`]), the renderer ([`render`]: data in, one self-contained
//! HTML document out, inline CSS and SVG, no external assets, refreshing itself), and the
//! live rates computed from two samples of the process's own Prometheus exposition
//! ([`counters`], [`rates`]). Gathering the data (Locate to each replica, sampling the
//! registry) lives in [`crate::status_probe`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Everything the page shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusPage {
    /// What serves the page, e.g. `meta cell meta at 127.0.0.1:7000` or `proxy p1 at …`.
    pub served_by: String,
    pub deployment: String,
    /// Seconds between the page's own reloads.
    pub refresh_secs: u32,
    /// The partition map in force (`None`: this server holds none).
    pub map: Option<MapView>,
    pub cells: Vec<CellView>,
    pub proxies: Vec<ProxyView>,
    /// The meta cell's reshard job (`None`: none recorded, or not shown by this server).
    pub job: Option<JobView>,
    pub rates: Vec<Rate>,
    /// What could not be gathered, one line each (shown, not hidden).
    pub problems: Vec<String>,
}

/// The partition map: the owner of every slot, in slot order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MapView {
    pub map_epoch: u64,
    pub slots: Vec<String>,
}

/// One cell and what each of its replicas answered to `Locate`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellView {
    pub name: String,
    pub replicas: Vec<ReplicaView>,
    /// Live sessions at the master, where this server knows them (its own cell).
    pub sessions: Option<u64>,
    /// Proxy sessions among them.
    pub proxy_sessions: Option<u64>,
}

/// One replica of a cell.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaView {
    pub addr: String,
    /// `Ok`: its `Locate` answer; `Err`: why it did not answer.
    pub state: Result<ReplicaState, String>,
}

/// A replica's `Locate` answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaState {
    /// `master` or `standby`.
    pub role: String,
    pub epoch: u64,
    pub map_epoch: u64,
    /// The master accepts all operations (not recovering from a failover).
    pub serving: bool,
    /// `ok`, or what is wrong with the store.
    pub store_health: String,
}

/// One proxy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyView {
    pub name: String,
    pub addr: String,
    pub client_sessions: u64,
    /// Clients whose lease cannot grow until a cell answers.
    pub clients_waiting: u64,
    /// Per cell: whether the proxy holds a live session there, and the error if not.
    pub upstream: Vec<Upstream>,
}

/// A proxy's link to one cell.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Upstream {
    pub cell: String,
    pub connected: bool,
    /// The last error on this link, if any.
    pub error: Option<String>,
}

/// A reshard job and the progress of each planned slot move.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobView {
    pub id: String,
    pub state: String,
    pub message: String,
    pub slots: Vec<SlotMove>,
}

/// One planned slot move.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotMove {
    pub slot: u32,
    pub from: String,
    pub to: String,
    /// The slot's state in the job (e.g. `Pending`, `Copying`, `Done`).
    pub state: String,
    /// Whether the move is finished (committed or given up).
    pub finished: bool,
}

/// A live rate: per second over the interval between two samples (`None`: not measured
/// yet).
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub what: String,
    pub per_second: Option<f64>,
}

/// The counters the page turns into rates: (what the page calls it, metric name, a
/// `label="value"` every counted series must carry, or "" for any; a leading `!` means
/// "must not carry").
const RATE_SERIES: &[(&str, &str, &str)] = &[
    ("cell RPCs/s", "warren_rpc_total", "tier=\"cell\""),
    ("proxy RPCs/s", "warren_rpc_total", "tier=\"proxy\""),
    ("errors/s (all tiers)", "warren_rpc_total", "!code=\"OK\""),
    ("cell KeepAlives/s", "warren_keepalives_received_total", ""),
    (
        "proxy KeepAlives/s (from clients)",
        "warren_proxy_keepalives_received_total",
        "",
    ),
    ("store mutations/s", "warren_store_mutations_total", ""),
    ("proxy cache hits/s", "warren_proxy_cache_hits_total", ""),
];

/// The samples of a Prometheus text exposition: `name{labels}` → value (comments and
/// unparsable lines skipped).
pub fn counters(exposition: &str) -> BTreeMap<String, f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sum_of(samples: &BTreeMap<String, f64>, name: &str, filter: &str) -> Option<f64> {
    let mut found = false;
    let mut total = 0.0;
    for (series, v) in samples {
        let (n, labels) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        let labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
        let keep = match filter.strip_prefix('!') {
            Some(f) => !labels.contains(&f),
            None => filter.is_empty() || labels.contains(&filter),
        };
        // A family that exists counts as measured even when no series matches (0/s).
        found = true;
        if keep {
            total += v;
        }
    }
    found.then_some(total)
}

/// The page's rates between two samples of [`counters`] taken `seconds` apart. A counter
/// this process does not export is left out; one that went down (a restart) counts from 0.
pub fn rates(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    seconds: f64,
) -> Vec<Rate> {
    RATE_SERIES
        .iter()
        .filter_map(|&(what, name, filter)| {
            let now = sum_of(after, name, filter)?;
            let then = sum_of(before, name, filter).unwrap_or(0.0);
            let delta = if now >= then { now - then } else { now };
            Some(Rate {
                what: what.to_string(),
                per_second: (seconds > 0.0).then(|| delta / seconds),
            })
        })
        .collect()
}

/// Escapes text for HTML content and quoted attribute values (`&`, `<`, `>`, `"`, `'`).
pub fn esc(s: &str) -> String {
    html_escape::encode_quoted_attribute(s).into_owned()
}

/// Distinct colours for the cells of the map picture, in the order of their names.
const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn colour_of(cells: &[String], cell: &str) -> &'static str {
    let i = cells.iter().position(|c| c == cell).unwrap_or(0);
    PALETTE[i % PALETTE.len()]
}

/// Slots per row of the map picture, and the side of a slot's square in pixels: 64 of
/// 10 px up to 1024 slots, then 128 of 5 px (4096 slots: 640 × 160 px).
fn map_grid(slots: usize) -> (usize, usize) {
    if slots <= 1024 {
        (64, 10)
    } else {
        (128, 5)
    }
}

/// The map as a picture: one small square per slot, [`map_grid`] to a row, coloured by
/// owner (a run of one owner within a row is one rectangle), with a legend of slot counts.
fn render_map(out: &mut String, map: &MapView) {
    let mut owners: Vec<String> = map.slots.clone();
    owners.sort();
    owners.dedup();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &map.slots {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    let (columns, cell_px) = map_grid(map.slots.len());
    let rows = map.slots.len().div_ceil(columns);
    let _ = write!(
        out,
        "<section id=\"map\"><h2>Partition map <small>epoch {} · {} slots</small></h2>\
         <svg id=\"map-picture\" role=\"img\" aria-label=\"slots per cell\" \
         viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">",
        map.map_epoch,
        map.slots.len(),
        w = columns * cell_px,
        h = rows.max(1) * cell_px,
    );
    for (row, chunk) in map.slots.chunks(columns).enumerate() {
        let mut start = 0;
        while start < chunk.len() {
            let owner = &chunk[start];
            let end = (start..chunk.len())
                .find(|&i| &chunk[i] != owner)
                .unwrap_or(chunk.len());
            let first = row * columns + start;
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" data-cell=\"{}\">\
                 <title>slots {}–{}: {}</title></rect>",
                start * cell_px,
                row * cell_px,
                (end - start) * cell_px,
                cell_px.max(2) - 1,
                colour_of(&owners, owner),
                esc(owner),
                first,
                first + (end - start) - 1,
                esc(owner),
            );
            start = end;
        }
    }
    out.push_str("</svg><ul class=\"legend\">");
    for (cell, n) in &counts {
        let _ = write!(
            out,
            "<li data-cell=\"{c}\"><span class=\"swatch\" style=\"background:{}\"></span>{c}: \
             <span class=\"slot-count\">{n}</span> slots</li>",
            colour_of(&owners, cell),
            c = esc(cell),
        );
    }
    out.push_str("</ul></section>");
}

fn render_cells(out: &mut String, cells: &[CellView]) {
    out.push_str(
        "<section id=\"cells\"><h2>Cells</h2><table><thead><tr><th>cell</th><th>sessions</th>\
         <th>replica</th><th>role</th><th>epoch</th><th>map epoch</th><th>serving</th>\
         <th>store</th></tr></thead><tbody>",
    );
    for c in cells {
        let sessions = match (c.sessions, c.proxy_sessions) {
            (Some(s), Some(p)) => format!("{s} ({p} proxy)"),
            (Some(s), None) => s.to_string(),
            _ => "–".into(),
        };
        let span = c.replicas.len().max(1);
        let _ = write!(
            out,
            "<tr class=\"cell\" data-cell=\"{n}\"><td rowspan=\"{span}\" class=\"name\">{n}</td>\
             <td rowspan=\"{span}\" class=\"sessions\">{sessions}</td>",
            n = esc(&c.name),
        );
        if c.replicas.is_empty() {
            out.push_str("<td colspan=\"6\">no replicas known</td></tr>");
        }
        for (i, r) in c.replicas.iter().enumerate() {
            if i > 0 {
                let _ = write!(out, "<tr data-cell=\"{}\">", esc(&c.name));
            }
            let _ = write!(out, "<td>{}</td>", esc(&r.addr));
            match &r.state {
                Ok(s) => {
                    let store_class = if s.store_health == "ok" { "ok" } else { "bad" };
                    let _ = write!(
                        out,
                        "<td class=\"role {role}\">{role}</td><td>{}</td><td>{}</td>\
                         <td class=\"{}\">{}</td><td class=\"{store_class}\">{}</td></tr>",
                        s.epoch,
                        s.map_epoch,
                        if s.serving { "ok" } else { "bad" },
                        if s.serving { "yes" } else { "no" },
                        esc(&s.store_health),
                        role = esc(&s.role),
                    );
                }
                Err(e) => {
                    let _ = write!(
                        out,
                        "<td colspan=\"5\" class=\"bad\">unreachable: {}</td></tr>",
                        esc(e)
                    );
                }
            }
        }
    }
    out.push_str("</tbody></table></section>");
}

fn render_proxies(out: &mut String, proxies: &[ProxyView]) {
    out.push_str("<section id=\"proxies\"><h2>Proxies</h2>");
    if proxies.is_empty() {
        out.push_str("<p>none known here (each proxy's own /status page shows it)</p>");
    } else {
        out.push_str(
            "<table><thead><tr><th>proxy</th><th>address</th><th>client sessions</th>\
             <th>waiting for a cell</th><th>upstream</th></tr></thead><tbody>",
        );
        for p in proxies {
            let _ = write!(
                out,
                "<tr class=\"proxy\"><td>{}</td><td>{}</td><td class=\"client-sessions\">{}</td>\
                 <td>{}</td><td>",
                esc(&p.name),
                esc(&p.addr),
                p.client_sessions,
                p.clients_waiting,
            );
            for u in &p.upstream {
                let (class, mark) = if u.connected {
                    ("ok", "✔")
                } else {
                    ("bad", "✘")
                };
                let title = u.error.as_deref().map(esc).unwrap_or_default();
                let _ = write!(
                    out,
                    "<span class=\"upstream {class}\" title=\"{title}\">{mark} {}</span> ",
                    esc(&u.cell)
                );
            }
            out.push_str("</td></tr>");
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

/// Unfinished slot moves listed in the job's table; the rest are counted (a job moves up
/// to thousands of slots, all of them in the progress picture).
const JOB_ROWS: usize = 32;

/// The colour of a slot move in the job's progress picture: finished (moved or given up),
/// in the batch being moved, or waiting.
fn move_colour(m: &SlotMove) -> &'static str {
    match (m.finished, m.state.as_str()) {
        (true, s) if s.starts_with("Aborted") => "#e15759",
        (true, _) => "#59a14f",
        (false, "Pending") => "#d0d0d0",
        (false, _) => "#f28e2b",
    }
}

/// The reshard job: its state, a progress bar, one square per planned slot move coloured
/// by its state, the count of moves in each state, and the unfinished moves (at most
/// [`JOB_ROWS`]).
fn render_job(out: &mut String, job: Option<&JobView>) {
    out.push_str("<section id=\"reshard\"><h2>Reshard job</h2>");
    let Some(job) = job else {
        out.push_str("<p>no reshard job recorded</p></section>");
        return;
    };
    let done = job.slots.iter().filter(|s| s.finished).count();
    let total = job.slots.len();
    let _ = write!(
        out,
        "<p><b>{}</b>: <span class=\"job-state\">{}</span> — {} \
         <span class=\"job-progress\">{done}/{total}</span> slots finished</p>\
         <progress max=\"{}\" value=\"{done}\"></progress>",
        esc(&job.id),
        esc(&job.state),
        esc(&job.message),
        total.max(1),
    );
    let (columns, px) = map_grid(total);
    let rows = total.div_ceil(columns).max(1);
    let _ = write!(
        out,
        "<svg id=\"job-picture\" role=\"img\" aria-label=\"slot moves by state\" \
         viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">",
        w = columns * px,
        h = rows * px,
    );
    for (i, m) in job.slots.iter().enumerate() {
        let _ = write!(
            out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>slot {} \
             {} → {}: {}</title></rect>",
            (i % columns) * px,
            (i / columns) * px,
            px.max(2) - 1,
            px.max(2) - 1,
            move_colour(m),
            m.slot,
            esc(&m.from),
            esc(&m.to),
            esc(&m.state),
        );
    }
    out.push_str("</svg><ul class=\"legend\" id=\"job-states\">");
    let mut by_state: BTreeMap<&str, (usize, &'static str)> = BTreeMap::new();
    for m in &job.slots {
        let e = by_state
            .entry(m.state.as_str())
            .or_insert((0, move_colour(m)));
        e.0 += 1;
    }
    for (state, (n, colour)) in &by_state {
        let _ = write!(
            out,
            "<li><span class=\"swatch\" style=\"background:{colour}\"></span>{}: {n}</li>",
            esc(state)
        );
    }
    out.push_str("</ul>");
    let open: Vec<&SlotMove> = job.slots.iter().filter(|s| !s.finished).collect();
    if !open.is_empty() {
        out.push_str(
            "<table><thead><tr><th>slot</th><th>from</th><th>to</th><th>state</th></tr></thead><tbody>",
        );
        for s in open.iter().take(JOB_ROWS) {
            let _ = write!(
                out,
                "<tr class=\"slot-move\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                s.slot,
                esc(&s.from),
                esc(&s.to),
                esc(&s.state),
            );
        }
        if open.len() > JOB_ROWS {
            let _ = write!(
                out,
                "<tr><td colspan=\"4\">… and {} more</td></tr>",
                open.len() - JOB_ROWS
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

fn render_rates(out: &mut String, rates: &[Rate]) {
    out.push_str("<section id=\"rates\"><h2>Live rates</h2><dl>");
    for r in rates {
        let v = r
            .per_second
            .map_or("measuring…".to_string(), |v| format!("{v:.1}"));
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(&r.what));
    }
    out.push_str("</dl></section>");
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}small{color:#666;font-weight:normal}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}\
th{background:#eee}.ok{color:#2a7a2a}.bad{color:#b00020;font-weight:bold}.role.master{font-weight:bold}\
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1em}.swatch{display:inline-block;width:1em;height:1em;margin-right:.3em;vertical-align:middle}\
svg{background:#fff;border:1px solid #ddd;max-width:100%;height:auto}dl{display:grid;grid-template-columns:max-content max-content;gap:.2em 1.5em}\
dd{margin:0;font-variant-numeric:tabular-nums}.problems{color:#b00020}progress{width:20em}svg,progress{display:block;margin:.4em 0}";

/// The whole page: one HTML document with its CSS inline and the map as inline SVG,
/// reloading itself every `refresh_secs` (a `<meta http-equiv="refresh">`: no script).
pub fn render(page: &StatusPage) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{}\">\
         <title>Warren {} — status</title><style>{STYLE}</style></head><body>\
         <h1>Warren deployment <span id=\"deployment\">{}</span></h1>\
         <p><small>served by {} · reloads every {} s</small></p>",
        page.refresh_secs.max(1),
        esc(&page.deployment),
        esc(&page.deployment),
        esc(&page.served_by),
        page.refresh_secs.max(1),
    );
    if !page.problems.is_empty() {
        out.push_str("<ul class=\"problems\">");
        for p in &page.problems {
            let _ = write!(out, "<li>{}</li>", esc(p));
        }
        out.push_str("</ul>");
    }
    match &page.map {
        Some(map) => render_map(&mut out, map),
        None => out.push_str(
            "<section id=\"map\"><h2>Partition map</h2><p>none in force here</p></section>",
        ),
    }
    render_cells(&mut out, &page.cells);
    render_proxies(&mut out, &page.proxies);
    render_job(&mut out, page.job.as_ref());
    render_rates(&mut out, &page.rates);
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatusPage {
        let mut slots = vec!["c1".to_string(); 100];
        slots.extend(vec!["c2".to_string(); 28]);
        StatusPage {
            served_by: "meta cell meta at 127.0.0.1:7000".into(),
            deployment: "prod".into(),
            refresh_secs: 5,
            map: Some(MapView {
                map_epoch: 3,
                slots,
            }),
            cells: vec![CellView {
                name: "c1".into(),
                replicas: vec![
                    ReplicaView {
                        addr: "10.0.0.1:7001".into(),
                        state: Ok(ReplicaState {
                            role: "master".into(),
                            epoch: 7,
                            map_epoch: 3,
                            serving: true,
                            store_health: "ok".into(),
                        }),
                    },
                    ReplicaView {
                        addr: "10.0.0.2:7001".into(),
                        state: Err("connection refused".into()),
                    },
                ],
                sessions: Some(42),
                proxy_sessions: Some(2),
            }],
            proxies: vec![ProxyView {
                name: "p1".into(),
                addr: "10.0.0.9:7100".into(),
                client_sessions: 1234,
                clients_waiting: 0,
                upstream: vec![
                    Upstream {
                        cell: "c1".into(),
                        connected: true,
                        error: None,
                    },
                    Upstream {
                        cell: "c2".into(),
                        connected: false,
                        error: Some("tcp connect <refused>".into()),
                    },
                ],
            }],
            job: Some(JobView {
                id: "job-1".into(),
                state: "Running".into(),
                message: "copying".into(),
                slots: vec![
                    SlotMove {
                        slot: 5,
                        from: "c1".into(),
                        to: "c2".into(),
                        state: "Done".into(),
                        finished: true,
                    },
                    SlotMove {
                        slot: 6,
                        from: "c1".into(),
                        to: "c2".into(),
                        state: "Copying".into(),
                        finished: false,
                    },
                ],
            }),
            rates: vec![
                Rate {
                    what: "cell RPCs/s".into(),
                    per_second: Some(12.5),
                },
                Rate {
                    what: "store mutations/s".into(),
                    per_second: None,
                },
            ],
            problems: vec!["cell c2: no replica <answered>".into()],
        }
    }

    #[test]
    fn the_page_shows_the_map_cells_proxies_job_and_rates() {
        let html = render(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("epoch 3 · 128 slots"), "{html}");
        // Two rows of 64: c1 has row 0 whole and 36 slots of row 1, c2 the other 28.
        let map_svg = html.split("<section id=\"cells\">").next().unwrap();
        assert_eq!(map_svg.matches("<rect ").count(), 3, "{html}");
        assert!(html.contains("<title>slots 64–99: c1</title>"), "{html}");
        assert!(html.contains("<title>slots 100–127: c2</title>"), "{html}");
        assert!(html.contains("c1: <span class=\"slot-count\">100</span> slots"));
        assert!(html.contains("c2: <span class=\"slot-count\">28</span> slots"));
        assert!(html.contains("<td rowspan=\"2\" class=\"sessions\">42 (2 proxy)</td>"));
        assert!(html.contains("<td class=\"role master\">master</td><td>7</td><td>3</td>"));
        assert!(html.contains("unreachable: connection refused"));
        assert!(html.contains("<td class=\"client-sessions\">1234</td>"));
        assert!(html.contains("title=\"tcp connect &lt;refused&gt;\">✘ c2</span>"));
        assert!(html.contains("<span class=\"job-progress\">1/2</span>"));
        // Both moves in the picture, the finished one green; only the open one listed.
        assert!(html.contains("fill=\"#59a14f\"><title>slot 5 c1 → c2: Done</title>"));
        assert!(html.contains("fill=\"#f28e2b\"><title>slot 6 c1 → c2: Copying</title>"));
        assert!(html.contains("<tr class=\"slot-move\"><td>6</td>"));
        assert!(!html.contains("<tr class=\"slot-move\"><td>5</td>"));
        assert!(html.contains("Copying: 1</li>") && html.contains("Done: 1</li>"));
        assert!(html.contains("<dt>cell RPCs/s</dt><dd>12.5</dd>"));
        assert!(html.contains("<dt>store mutations/s</dt><dd>measuring…</dd>"));
        assert!(html.contains("<li>cell c2: no replica &lt;answered&gt;</li>"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let html = render(&sample());
        for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
            assert!(
                !html.contains(external),
                "the page refers outside: {external}"
            );
        }
    }

    #[test]
    fn a_large_job_lists_only_its_first_open_moves() {
        let mut page = sample();
        page.job = Some(JobView {
            id: "big".into(),
            state: "Running".into(),
            message: String::new(),
            slots: (0..1500)
                .map(|i| SlotMove {
                    slot: i,
                    from: "c1".into(),
                    to: "c3".into(),
                    state: if i < 1000 { "Done" } else { "Pending" }.into(),
                    finished: i < 1000,
                })
                .collect(),
        });
        let html = render(&page);
        assert_eq!(html.matches("<tr class=\"slot-move\">").count(), JOB_ROWS);
        assert!(html.contains("… and 468 more"));
        assert!(html.contains("<span class=\"job-progress\">1000/1500</span>"));
        assert!(html.contains("Done: 1000</li>") && html.contains("Pending: 500</li>"));
        // 1500 squares of 5 px, 128 to a row: 12 rows.
        assert!(html.contains("viewBox=\"0 0 640 60\""), "{html}");
    }

    #[test]
    fn names_are_escaped() {
        let mut page = sample();
        page.deployment = "<script>alert(1)</script>".into();
        let html = render(&page);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn an_empty_page_still_renders_every_section() {
        let html = render(&StatusPage::default());
        for id in ["map", "cells", "proxies", "reshard", "rates"] {
            assert!(html.contains(&format!("<section id=\"{id}\">")), "{id}");
        }
        assert!(html.contains("none in force here"));
        assert!(html.contains("no reshard job recorded"));
        assert!(
            html.contains("content=\"1\""),
            "a 0 s refresh would reload forever"
        );
    }

    #[test]
    fn rates_are_deltas_over_the_interval() {
        let before = counters(
            "# TYPE warren_rpc_total counter\n\
             warren_rpc_total{tier=\"cell\",method=\"Open\",code=\"OK\"} 10\n\
             warren_rpc_total{tier=\"cell\",method=\"Open\",code=\"NOT_FOUND\"} 1\n\
             warren_rpc_total{tier=\"proxy\",method=\"Open\",code=\"OK\"} 4\n\
             warren_keepalives_received_total 100\n",
        );
        let after = counters(
            "warren_rpc_total{tier=\"cell\",method=\"Open\",code=\"OK\"} 30\n\
             warren_rpc_total{tier=\"cell\",method=\"Open\",code=\"NOT_FOUND\"} 5\n\
             warren_rpc_total{tier=\"proxy\",method=\"Open\",code=\"OK\"} 4\n\
             warren_keepalives_received_total 3\n\
             warren_store_mutations_total 8\n",
        );
        let r: BTreeMap<String, Option<f64>> = rates(&before, &after, 2.0)
            .into_iter()
            .map(|r| (r.what, r.per_second))
            .collect();
        assert_eq!(r["cell RPCs/s"], Some(12.0));
        assert_eq!(r["proxy RPCs/s"], Some(0.0));
        assert_eq!(r["errors/s (all tiers)"], Some(2.0));
        // Went down: the process restarted; count from 0.
        assert_eq!(r["cell KeepAlives/s"], Some(1.5));
        // New since the first sample: counted from 0.
        assert_eq!(r["store mutations/s"], Some(4.0));
        // Not exported by this process at all: left out.
        assert!(!r.contains_key("proxy cache hits/s"));
        assert_eq!(rates(&before, &after, 0.0)[0].per_second, None);
    }
}
