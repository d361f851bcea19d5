//! What `warren ctl reshard` prints in text: a plan (the per-cell diff, the moves as runs
//! with what they hold, the totals and the time [`Estimate`]), a job's status
//! ([`render_status`]) and an abort's answer. The JSON forms are the plan's and the job's
//! own JSON, printed as they are.

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use warren_reshard::job::{JobState, JobStatus, SlotState};
use warren_reshard::{MoveCounts, Plan};
use warren_router::{move_runs, PartitionMap, SlotMove};

use super::reshard::natural;

/// The fixed cost of moving one slot, whatever it holds: its share of a batch's round
/// trips (copy rounds, freeze, hand-off, the map write, the drop) at the default 16 slots
/// per batch. Measured: 1024 nearly empty slots moved in 12 s (64 batches of ~190 ms) on
/// the 2-core machine, debug build, idle (docs/resharding.md, "How long it takes").
pub(crate) const PER_SLOT_OVERHEAD: Duration = Duration::from_millis(12);
/// The copy rate the estimate assumes when the operator gives none, in bytes per second.
pub(crate) const ASSUMED_BYTES_PER_SEC: u64 = 50_000_000;

/// A plan's estimated time: `slots × PER_SLOT_OVERHEAD + bytes / rate`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) slots: u64,
    pub(crate) bytes: u64,
    /// The copy rate used, in bytes per second.
    pub(crate) bytes_per_sec: u64,
    pub(crate) total: Duration,
}

impl Estimate {
    /// The estimate for `plan` at `max_bytes_per_sec` (the operator's limit) or, without
    /// one, [`ASSUMED_BYTES_PER_SEC`].
    pub(crate) fn of(plan: &Plan, max_bytes_per_sec: Option<u64>) -> Estimate {
        let bytes_per_sec = max_bytes_per_sec.unwrap_or(ASSUMED_BYTES_PER_SEC).max(1);
        let slots = plan.moves.len() as u64;
        let bytes = plan.totals.bytes;
        let copy = Duration::from_secs_f64(bytes as f64 / bytes_per_sec as f64);
        let fixed = PER_SLOT_OVERHEAD.saturating_mul(u32::try_from(slots).unwrap_or(u32::MAX));
        Estimate {
            slots,
            bytes,
            bytes_per_sec,
            total: fixed.saturating_add(copy),
        }
    }

    /// `estimated time: 4.1 s (16 slots × 12 ms + 2.3 MB at 50 MB/s)`.
    pub(crate) fn text(&self) -> String {
        format!(
            "estimated time: {} ({} slots × {} ms + {} at {}/s)",
            human_duration(self.total),
            self.slots,
            PER_SLOT_OVERHEAD.as_millis(),
            human_bytes(self.bytes),
            human_bytes(self.bytes_per_sec),
        )
    }
}

/// Bytes in decimal units: `512 B`, `2.3 MB`, `50 MB`, `1.2 GB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    let text = format!("{v:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

/// A duration for people: `0.4 s`, `25.6 s`, `3 min 5 s`, `2 h 1 min`.
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let whole = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    if whole < 3600 {
        format!("{} min {} s", whole / 60, whole % 60)
    } else {
        format!("{} h {} min", whole / 3600, (whole % 3600) / 60)
    }
}

/// Rows as columns: the first row is the header; columns in `right` are right-aligned
/// (numbers), the others left-aligned; two spaces between columns, no trailing spaces.
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    if right.get(c).copied().unwrap_or(false) {
                        format!("{s:>w$}", w = widths[c])
                    } else {
                        format!("{s:<w$}", w = widths[c])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The count columns' headers, in the order of [`count_cells`].
const COUNT_HEADERS: [&str; 7] = [
    "directories",
    "nodes",
    "bytes",
    "held_locks",
    "ephemeral_nodes",
    "open_handles",
    "sessions",
];

fn count_cells(c: &MoveCounts) -> Vec<String> {
    vec![
        c.directories.to_string(),
        c.nodes.to_string(),
        human_bytes(c.bytes),
        c.held_locks.to_string(),
        c.ephemeral_nodes.to_string(),
        c.open_handles.to_string(),
        c.sessions.to_string(),
    ]
}

/// Each cell's slots now and after `plan` (cells it adds at 0 now; cells it removes at 0
/// after), and how each cell changes: `added`, `removed` or nothing.
fn per_cell(current: &PartitionMap, plan: &Plan) -> Vec<(String, u32, u32, &'static str)> {
    let now = current.slot_counts();
    let mut after: BTreeMap<String, i64> = now
        .iter()
        .map(|(c, n)| (c.clone(), i64::from(*n)))
        .collect();
    for cell in plan.cells.keys() {
        after.entry(cell.clone()).or_insert(0);
    }
    for m in &plan.moves {
        *after.entry(m.from.clone()).or_insert(0) -= 1;
        *after.entry(m.to.clone()).or_insert(0) += 1;
    }
    natural(after.keys())
        .into_iter()
        .map(|cell| {
            let before = now.get(cell).copied().unwrap_or(0);
            let proposed = u32::try_from(after[cell].max(0)).unwrap_or(0);
            let note = if !now.contains_key(cell) {
                "added"
            } else if !plan.cells.contains_key(cell) {
                "removed"
            } else {
                ""
            };
            (cell.to_string(), before, proposed, note)
        })
        .collect()
}

/// The plan in text: a headline, the per-cell slot counts now and proposed, the moves as
/// runs of consecutive slots with what they hold, the totals, the estimate.
pub(crate) fn plan_text(current: &PartitionMap, plan: &Plan, estimate: &Estimate) -> String {
    if plan.moves.is_empty() {
        return format!(
            "deployment {}, map epoch {}: the plan moves nothing (every cell already has its \
             share of the {} slots)",
            plan.deployment, plan.from_epoch, plan.slot_count
        );
    }
    let mut out = Vec::new();
    out.push(format!(
        "deployment {}, map epoch {}: {} of {} slots move",
        plan.deployment,
        plan.from_epoch,
        plan.moves.len(),
        plan.slot_count
    ));
    out.push(String::new());

    let mut rows = vec![vec![
        "cell".to_string(),
        "slots now".to_string(),
        "proposed".to_string(),
        "change".to_string(),
        String::new(),
    ]];
    for (cell, before, after, note) in per_cell(current, plan) {
        rows.push(vec![
            cell,
            before.to_string(),
            after.to_string(),
            format!("{:+}", i64::from(after) - i64::from(before)),
            note.to_string(),
        ]);
    }
    out.push(table(&rows, &[false, true, true, true, false]));
    out.push(String::new());

    let counts: BTreeMap<u32, &MoveCounts> =
        plan.moves.iter().map(|m| (m.slot, &m.counts)).collect();
    let moves: Vec<SlotMove> = plan
        .moves
        .iter()
        .map(|m| SlotMove {
            slot: m.slot,
            from: m.from.clone(),
            to: m.to.clone(),
        })
        .collect();
    let mut header = vec!["slots".to_string(), "from".to_string(), "to".to_string()];
    header.extend(COUNT_HEADERS.iter().map(|h| h.to_string()));
    let mut rows = vec![header];
    for run in move_runs(&moves) {
        let mut sum = MoveCounts::default();
        for slot in run.slots.clone() {
            if let Some(c) = counts.get(&slot) {
                sum.add(c);
            }
        }
        let slots = if run.slots.start() == run.slots.end() {
            run.slots.start().to_string()
        } else {
            format!("{}-{}", run.slots.start(), run.slots.end())
        };
        let mut row = vec![slots, run.from.clone(), run.to.clone()];
        row.extend(count_cells(&sum));
        rows.push(row);
    }
    let mut total = vec!["total".to_string(), String::new(), String::new()];
    total.extend(count_cells(&plan.totals));
    rows.push(total);
    let right: Vec<bool> = (0..3 + COUNT_HEADERS.len()).map(|c| c >= 3).collect();
    out.push(table(&rows, &right));
    out.push(String::new());
    out.push(estimate.text());
    out.join("\n")
}

/// A job's status in text. For now its JSON, pretty-printed; to be replaced by per-slot
/// progress bars.
pub(crate) fn render_status(job: &Value) -> String {
    match serde_json::from_value::<JobStatus>(job.clone()) {
        Ok(status) => status_text(&status),
        // A meta cell of another version: show what it said.
        Err(_) => serde_json::to_string_pretty(job).unwrap_or_else(|_| job.to_string()),
    }
}

/// The job's state as one word (`running`, `done`, `failed: …`).
pub(crate) fn state_word(state: &JobState) -> String {
    match state {
        JobState::Failed { reason } => format!("failed: {reason}"),
        s => format!("{s:?}").to_lowercase(),
    }
}

/// `p`-quantile of `sorted` (nearest rank), if any.
fn quantile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The one-line summary `status --watch` shows beside its progress bar.
pub(crate) fn status_line(s: &JobStatus) -> String {
    let mut parts = vec![state_word(&s.state)];
    parts.push(format!("copied {}", human_bytes(s.bytes_copied)));
    if let Some(max) = s.write_pause_max_ms {
        parts.push(format!("write pause max {max} ms"));
    }
    if let Some(eta) = s.eta_ms.filter(|_| !s.state.is_finished()) {
        parts.push(format!(
            "ETA {}",
            human_duration(Duration::from_millis(eta))
        ));
    }
    parts.join(", ")
}

/// `reshard status` in text: the job, its progress, the write pauses of moved slots, and
/// the slots of the batch in flight (and any given up).
pub(crate) fn status_text(s: &JobStatus) -> String {
    let mut lines = vec![
        format!("job: {} ({})", s.id, state_word(&s.state)),
        format!("map epoch: {}", s.map_epoch),
    ];
    let done = s.slots_moved + s.slots_aborted;
    let pct = (done * 100).checked_div(s.slots_total).unwrap_or(100);
    lines.push(format!(
        "slots: {} moved, {} pending, {} given up, of {} ({pct}% done)",
        s.slots_moved, s.slots_pending, s.slots_aborted, s.slots_total
    ));
    let mut copied = format!(
        "copied: {} ({}/s)",
        human_bytes(s.bytes_copied),
        human_bytes(s.bytes_per_sec)
    );
    if let Some(eta) = s.eta_ms.filter(|_| !s.state.is_finished()) {
        copied.push_str(&format!(
            ", ETA {}",
            human_duration(Duration::from_millis(eta))
        ));
    }
    lines.push(copied);
    let mut pauses: Vec<u64> = s
        .slots
        .iter()
        .filter(|p| p.state == SlotState::Done)
        .filter_map(|p| p.write_pause_ms)
        .collect();
    pauses.sort_unstable();
    if let (Some(p50), Some(p99), Some(max)) = (
        quantile(&pauses, 0.5),
        quantile(&pauses, 0.99),
        pauses.last(),
    ) {
        lines.push(format!(
            "write pause per moved slot: p50 {p50} ms, p99 {p99} ms, max {max} ms"
        ));
    }
    if !s.message.is_empty() {
        lines.push(format!("message: {}", s.message));
    }
    if let Some(e) = &s.last_error {
        lines.push(format!("last error: {e}"));
    }
    let shown: Vec<_> = s
        .slots
        .iter()
        .filter(|p| !matches!(p.state, SlotState::Pending | SlotState::Done))
        .collect();
    if !shown.is_empty() {
        lines.push(String::new());
        lines.push(format!(
            "{:>6}  {:<16}  {:<12}  {:>6}  {:>9}  {:>5}  {:>8}  {:>8}  error",
            "slot", "from -> to", "state", "nodes", "bytes", "lag", "pause", "attempts"
        ));
        for p in shown {
            let state = match &p.state {
                SlotState::Aborted { .. } => "given up".to_string(),
                st => format!("{st:?}").to_lowercase(),
            };
            let reason = match &p.state {
                SlotState::Aborted { reason } => Some(reason.clone()),
                _ => p.error.clone(),
            };
            lines.push(format!(
                "{:>6}  {:<16}  {:<12}  {:>6}  {:>9}  {:>5}  {:>8}  {:>8}  {}",
                p.slot,
                format!("{} -> {}", p.from, p.to),
                state,
                p.nodes,
                human_bytes(p.bytes),
                p.lag_nodes.map_or("-".into(), |l| l.to_string()),
                p.write_pause_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                p.attempts,
                reason.unwrap_or_default()
            ));
        }
    }
    lines.join("\n")
}

/// `reshard abort`'s answer in text: the job's id and state, and its message if any.
pub(crate) fn abort_text(job: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "(unknown)".to_string(),
        other => other.to_string(),
    };
    let mut lines = vec![
        format!("job: {}", text(&job["id"])),
        format!("state: {}", text(&job["state"])),
    ];
    if let Some(m) = job.get("message").filter(|m| !m.is_null()) {
        lines.push(format!("message: {}", text(m)));
    }
    lines.join("\n")
}
