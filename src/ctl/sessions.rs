//! `warren ctl session list` and `warren ctl lock list PATH`: the session and lock tables of
//! every cell's master, read with the operator-only gRPC call `Reshard.SessionTable` (over
//! mutual TLS it needs an operator certificate; docs/security.md, "Who may list sessions")
//! at the cells the meta cell's admin `/map` names (docs/ctl.md, "Sessions and locks").
//! Read-only, and without a session of ctl's own, so the list shows only the deployment's
//! clients.

use serde::Deserialize;
use serde_json::{json, Value};

use super::failure::Failure;
use super::members::{self, admin_addr, Kind};
use super::output::{self, table, Output};
use warren_proto::pb;

/// One session, as `Reshard.SessionTable` (and a plaintext cell's `/debug/sessions`) shows it (`warren_cell::core::SessionView`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct SessionRow {
    pub(crate) id: String,
    pub(crate) principal: String,
    pub(crate) kind: String,
    pub(crate) proxy: String,
    pub(crate) proxy_principal: String,
    pub(crate) lease_remaining_ms: u64,
    pub(crate) orphan: bool,
    pub(crate) handles: Vec<String>,
    pub(crate) locks: Vec<HeldLock>,
}

/// A lock a session holds.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct HeldLock {
    pub(crate) path: String,
    pub(crate) mode: String,
}

/// A lock with holders or waiters (`warren_cell::core::LockView`).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct LockRow {
    pub(crate) path: String,
    pub(crate) lock_generation: u64,
    pub(crate) holders: Vec<Party>,
    pub(crate) waiters: Vec<Party>,
}

/// A holder or a waiter.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Party {
    pub(crate) session: String,
    pub(crate) principal: String,
    pub(crate) mode: String,
}

/// One cell master's tables.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct CellTable {
    pub(crate) cell: String,
    pub(crate) sessions: Vec<SessionRow>,
    pub(crate) locks: Vec<LockRow>,
}

/// The tables of every cell's master: the meta cell's and each data cell's, asked with
/// `Reshard.SessionTable` at the cell's replicas (following `NOT_MASTER` to the master).
async fn tables(meta: &[String], offset: u16) -> Result<Vec<CellTable>, Failure> {
    let map = members::read_map(meta, offset).await?;
    let all = members::members(meta, map.as_ref(), &[]);
    // Replicas grouped by cell, in the members' order.
    let mut cells: Vec<(Kind, Vec<String>)> = Vec::new();
    for m in all {
        match cells.iter_mut().find(|(k, _)| *k == m.kind) {
            Some((_, addrs)) => addrs.push(m.addr),
            None => cells.push((m.kind, vec![m.addr])),
        }
    }
    let mut out = Vec::new();
    for (kind, replicas) in cells {
        let who = match kind {
            Kind::Data(name) => format!("cell {name}"),
            _ => "the meta cell".into(),
        };
        let reply = warren_client::reshard::at_master(&replicas, |mut c| async move {
            c.session_table(pb::SessionTableRequest {}).await
        })
        .await
        .map_err(|e| super::reshard::call_failure(e, &who, &replicas, "list its sessions"))?;
        let t: CellTable = serde_json::from_slice(&reply.table).map_err(|e| Failure {
            code: "INTERNAL",
            message: format!("{who}'s session table does not parse: {e}"),
        })?;
        out.push(t);
    }
    Ok(out)
}

/// The first 16 hex digits of a session id: enough to tell sessions apart on a screen.
fn short(id: &str) -> String {
    id.chars().take(16).collect()
}

fn lease_text(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// `session list`.
pub(crate) async fn list(meta: &[String], offset: u16, out: Output) -> Result<(), Failure> {
    let tables = tables(meta, offset).await?;
    let rows: Vec<(&str, &SessionRow)> = tables
        .iter()
        .flat_map(|t| t.sessions.iter().map(move |s| (t.cell.as_str(), s)))
        .collect();
    output::print_line(&sessions_text(&rows, out))
}

/// The proxy column: the proxy session's principal, else its short id; `-` for none.
fn proxy_text(s: &SessionRow) -> String {
    if s.proxy.is_empty() {
        "-".into()
    } else if !s.proxy_principal.is_empty() {
        s.proxy_principal.clone()
    } else {
        short(&s.proxy)
    }
}

fn locks_text(s: &SessionRow) -> String {
    s.locks
        .iter()
        .map(|l| format!("{}({})", l.path, l.mode))
        .collect::<Vec<_>>()
        .join(",")
}

/// `session list`'s output: a row per session, by cell.
pub(crate) fn sessions_text(rows: &[(&str, &SessionRow)], out: Output) -> String {
    if out.json {
        let v: Vec<Value> = rows
            .iter()
            .map(|(cell, s)| {
                json!({
                    "cell": cell,
                    "id": s.id,
                    "principal": s.principal,
                    "kind": s.kind,
                    "proxy": s.proxy,
                    "proxy_principal": s.proxy_principal,
                    "lease_remaining_ms": s.lease_remaining_ms,
                    "orphan": s.orphan,
                    "handles": s.handles,
                    "locks": s.locks.iter().map(|l| json!({"path": l.path, "mode": l.mode})).collect::<Vec<_>>(),
                })
            })
            .collect();
        return Value::Array(v).to_string();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(cell, s)| {
            vec![
                cell.to_string(),
                short(&s.id),
                if s.principal.is_empty() {
                    "(anonymous)".into()
                } else {
                    s.principal.clone()
                },
                if s.orphan {
                    format!("{} (orphan)", s.kind)
                } else {
                    s.kind.clone()
                },
                proxy_text(s),
                lease_text(s.lease_remaining_ms),
                if s.handles.is_empty() {
                    "-".into()
                } else {
                    s.handles.join(",")
                },
                if s.locks.is_empty() {
                    "-".into()
                } else {
                    locks_text(s)
                },
            ]
        })
        .collect();
    if out.table {
        return table(
            &[
                "cell",
                "session",
                "principal",
                "kind",
                "proxy",
                "lease left",
                "handles",
                "locks",
            ],
            &cells,
        );
    }
    cells
        .iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `lock list PATH`: the lock on the node at `path` (a full path, or short in the meta
/// cell's deployment): its generation, holders and waiters, from the cell that holds it.
pub(crate) async fn lock_list(
    meta: &[String],
    offset: u16,
    path: &str,
    out: Output,
) -> Result<(), Failure> {
    let tables = tables(meta, offset).await?;
    let full = if path.starts_with("/ls/") {
        path.to_string()
    } else {
        let deployment = deployment_of(meta, offset).await?;
        format!("/ls/{deployment}{path}")
    };
    let lock = tables
        .iter()
        .flat_map(|t| t.locks.iter().map(move |l| (t.cell.as_str(), l)))
        .find(|(_, l)| l.path == full);
    output::print_line(&lock_text(&full, lock, out))
}

/// The deployment's name, from the meta cell's admin `/status`.
async fn deployment_of(meta: &[String], offset: u16) -> Result<String, Failure> {
    for addr in meta {
        let admin = admin_addr(addr, offset)?;
        if let Ok((200, body)) = members::http_get(&admin, "/status").await {
            if let Some(d) = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
                v.get("deployment")
                    .and_then(Value::as_str)
                    .map(String::from)
            }) {
                return Ok(d);
            }
        }
    }
    Err(Failure {
        code: "UNREACHABLE",
        message: "cannot learn the deployment's name from the meta cell's admin /status; \
                  give the full path (/ls/<deployment>/…)"
            .into(),
    })
}

/// `lock list`'s output; `lock`: the cell and the lock, `None` when nobody holds or waits
/// for it.
pub(crate) fn lock_text(path: &str, lock: Option<(&str, &LockRow)>, out: Output) -> String {
    let party = |p: &Party| json!({"session": p.session, "principal": p.principal, "mode": p.mode});
    if out.json {
        return match lock {
            Some((cell, l)) => json!({
                "path": path,
                "cell": cell,
                "lock_generation": l.lock_generation,
                "holders": l.holders.iter().map(party).collect::<Vec<_>>(),
                "waiters": l.waiters.iter().map(party).collect::<Vec<_>>(),
            }),
            None => json!({"path": path, "cell": null, "lock_generation": null, "holders": [], "waiters": []}),
        }
        .to_string();
    }
    let Some((cell, l)) = lock else {
        return format!("{path}: not held, no waiters");
    };
    let who = |p: &Party| {
        let principal = if p.principal.is_empty() {
            "(anonymous)"
        } else {
            p.principal.as_str()
        };
        vec![principal.to_string(), short(&p.session), p.mode.clone()]
    };
    if out.table {
        let mut rows: Vec<Vec<String>> = Vec::new();
        for h in &l.holders {
            let mut r = vec!["holder".to_string()];
            r.extend(who(h));
            rows.push(r);
        }
        for (i, w) in l.waiters.iter().enumerate() {
            let mut r = vec![format!("waiter {}", i + 1)];
            r.extend(who(w));
            rows.push(r);
        }
        return format!(
            "{path} (cell {cell}, lock generation {})\n{}",
            l.lock_generation,
            table(&["role", "principal", "session", "mode"], &rows)
        );
    }
    let mut lines = vec![
        format!("path: {path}"),
        format!("cell: {cell}"),
        format!("lock_generation: {}", l.lock_generation),
    ];
    for h in &l.holders {
        lines.push(format!("holder: {}", who(h).join(" ")));
    }
    for w in &l.waiters {
        lines.push(format!("waiter: {}", who(w).join(" ")));
    }
    lines.join("\n")
}
