//! The members of a deployment and what each says about itself, for `warren ctl endpoint
//! status|health`, `session list` and `lock list`: the meta cell (`--meta`), the data cells
//! and their replicas (from the partition map), the proxies (`--proxies`); each probed by
//! `Locate` over gRPC and by its admin HTTP pages (`/status`, `/readyz`, `/version`), whose
//! address is the gRPC port plus `--admin-offset` (docs/ctl.md, "Endpoints").

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use warren_client::LocateInfo;
use warren_router::PartitionMap;

use super::failure::Failure;
use super::output::{table, Output};

/// The admin port's offset from the gRPC port in `warren dev`'s layout
/// (`warren_config::Layout`: meta P / P+80, data cell k P+k / P+80+k, proxy j P+100+j /
/// P+180+j), the default of `--admin-offset`.
pub const DEFAULT_ADMIN_OFFSET: u16 = 80;

/// How long one probe of one member may take (each of its calls).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What a member is in the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A replica of the meta cell.
    Meta,
    /// A replica of the named data cell.
    Data(String),
    /// A proxy.
    Proxy,
}

/// One member to probe: its kind and its gRPC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    pub(crate) kind: Kind,
    pub(crate) addr: String,
}

/// `addr`'s admin address: the same host, the port plus `offset`.
pub(crate) fn admin_addr(addr: &str, offset: u16) -> Result<String, Failure> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        Failure::invalid(format!(
            "endpoint {addr:?} has no port; write HOST:PORT (e.g. 127.0.0.1:7100)"
        ))
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| Failure::invalid(format!("endpoint {addr:?}: {port:?} is not a port")))?;
    let admin = port.checked_add(offset).ok_or_else(|| {
        Failure::invalid(format!(
            "endpoint {addr:?}: port {port} + --admin-offset {offset} is past 65535"
        ))
    })?;
    Ok(format!("{host}:{admin}"))
}

/// `GET http://addr{path}` within the probe timeout: (status, body).
pub(crate) async fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    warren_loadtest::http::get(addr, path, PROBE_TIMEOUT)
        .await
        .map(|r| (r.status, r.body))
        .map_err(|e| format!("admin http://{addr}{path}: {e}"))
}

/// The partition map, from the meta cell's admin `/map` (its master's), or `None` when the
/// meta cell has none (an unpartitioned cell).
pub(crate) async fn read_map(
    meta: &[String],
    offset: u16,
) -> Result<Option<PartitionMap>, Failure> {
    let mut errors = Vec::new();
    let mut none = false;
    for addr in meta {
        let admin = admin_addr(addr, offset)?;
        match http_get(&admin, "/map").await {
            Ok((200, body)) => {
                return PartitionMap::from_json(body.trim())
                    .map(Some)
                    .map_err(|e| Failure {
                        code: "INTERNAL",
                        message: format!("the map at http://{admin}/map does not parse: {e}"),
                    })
            }
            Ok((404, body)) if body.contains("no partition map") => none = true,
            Ok((status, body)) => errors.push(format!("{admin}: {status} {}", body.trim())),
            Err(e) => errors.push(e),
        }
    }
    if none {
        return Ok(None);
    }
    Err(Failure {
        code: "UNREACHABLE",
        message: format!(
            "cannot read the partition map from the meta cell's admin pages ({}); is `warren \
             dev` (or the meta cell) running, and is its admin port its gRPC port + \
             --admin-offset {offset}?",
            errors.join("; ")
        ),
    })
}

/// Every member: the meta cell's replicas, each data cell's replicas (from `map`), the
/// proxies.
pub(crate) fn members(
    meta: &[String],
    map: Option<&PartitionMap>,
    proxies: &[String],
) -> Vec<Member> {
    let mut out: Vec<Member> = meta
        .iter()
        .map(|a| Member {
            kind: Kind::Meta,
            addr: a.clone(),
        })
        .collect();
    if let Some(map) = map {
        for (cell, replicas) in map.cells() {
            for a in replicas {
                out.push(Member {
                    kind: Kind::Data(cell.to_string()),
                    addr: a.clone(),
                });
            }
        }
    }
    out.extend(proxies.iter().map(|a| Member {
        kind: Kind::Proxy,
        addr: a.clone(),
    }));
    out
}

/// What one member says about itself; `None`: not known (printed `-`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    pub(crate) endpoint: String,
    /// The cell's name, or the proxy's id.
    pub(crate) name: String,
    /// `meta master`, `meta standby`, `data master`, `data standby`, `proxy`.
    pub(crate) role: String,
    pub(crate) epoch: Option<u64>,
    pub(crate) map_epoch: Option<u64>,
    /// A cell master's sessions; a proxy's client sessions.
    pub(crate) sessions: Option<u64>,
    pub(crate) nodes: Option<u64>,
    pub(crate) store_health: Option<String>,
    pub(crate) version: Option<String>,
    /// Reachable over gRPC, and ready by its admin `/readyz` (a standby: its store is ok).
    pub(crate) healthy: bool,
    pub(crate) took: Duration,
    /// What went wrong, `; `-separated.
    pub(crate) errors: Vec<String>,
}

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

/// Probes one member: `Locate`, then its admin `/status`, `/readyz` and `/version`.
pub(crate) async fn probe(member: &Member, offset: u16) -> Probe {
    let started = Instant::now();
    let mut p = Probe {
        endpoint: member.addr.clone(),
        ..Probe::default()
    };
    let located: Option<LocateInfo> =
        match warren_client::locate(std::slice::from_ref(&member.addr), PROBE_TIMEOUT).await {
            Ok(info) => Some(info),
            Err(e) => {
                p.errors.push(Failure::from(e).message);
                None
            }
        };
    let admin = match admin_addr(&member.addr, offset) {
        Ok(a) => Some(a),
        Err(f) => {
            p.errors.push(f.message);
            None
        }
    };
    let status = match &admin {
        Some(a) => match http_get(a, "/status").await {
            Ok((200, body)) => serde_json::from_str::<Value>(&body).ok(),
            Ok((code, _)) => {
                p.errors
                    .push(format!("admin http://{a}/status: HTTP {code}"));
                None
            }
            Err(e) => {
                p.errors.push(e);
                None
            }
        },
        None => None,
    };
    let ready = match &admin {
        Some(a) => match http_get(a, "/readyz").await {
            Ok((200, _)) => Ok(()),
            Ok((_, why)) => Err(why.trim().to_string()),
            Err(e) => Err(e),
        },
        None => Err("no admin address".to_string()),
    };
    if let Some(a) = &admin {
        if let Ok((200, v)) = http_get(a, "/version").await {
            p.version = Some(v.trim().to_string());
        }
    }
    match &member.kind {
        Kind::Proxy => {
            p.role = "proxy".into();
            if let Some(s) = &status {
                p.name = s
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                p.map_epoch = u64_at(s, "map_epoch");
                p.sessions = u64_at(s, "client_sessions");
            }
            p.healthy = located.is_some() && ready.is_ok();
            if let (Some(_), Err(why)) = (&located, &ready) {
                p.errors.push(format!("not ready: {why}"));
            }
        }
        Kind::Meta | Kind::Data(_) => {
            let tier = if member.kind == Kind::Meta {
                "meta"
            } else {
                "data"
            };
            p.name = match &member.kind {
                Kind::Data(name) => name.clone(),
                _ => String::new(),
            };
            match &located {
                Some(info) => {
                    if !info.cell.is_empty() {
                        p.name = info.cell.clone();
                    }
                    p.role = format!("{tier} {}", info.role);
                    p.epoch = Some(info.epoch);
                    p.map_epoch = Some(info.map_epoch);
                    p.store_health = Some(info.store_health.clone());
                    let master = info.role == "master";
                    if let (true, Some(s)) = (master, &status) {
                        p.sessions = u64_at(s, "sessions");
                        p.nodes = u64_at(s, "nodes");
                    }
                    // A standby is never ready (it serves nothing); it is healthy when
                    // its store is.
                    p.healthy = if master {
                        ready.is_ok()
                    } else {
                        info.store_health == "ok"
                    };
                    if master {
                        if let Err(why) = &ready {
                            p.errors.push(format!("not ready: {why}"));
                        }
                    }
                }
                None => p.role = tier.to_string(),
            }
        }
    }
    p.took = started.elapsed();
    p
}

/// Probes every member, all at once, in their order.
pub(crate) async fn probe_all(members: &[Member], offset: u16) -> Vec<Probe> {
    futures::future::join_all(members.iter().map(|m| probe(m, offset))).await
}

fn dash<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), T::to_string)
}

fn opt_json<T: Into<Value> + Clone>(v: &Option<T>) -> Value {
    v.clone().map_or(Value::Null, Into::into)
}

/// A member's JSON row: who it is, then `fields`.
fn json_row(p: &Probe, fields: Value) -> Value {
    let mut row = json!({"endpoint": p.endpoint, "name": p.name, "role": p.role});
    if let (Value::Object(row), Value::Object(fields)) = (&mut row, fields) {
        row.extend(fields);
    }
    row
}

/// Every member's JSON row, as one array.
fn json_rows(probes: &[Probe], fields: impl Fn(&Probe) -> Value) -> String {
    Value::Array(probes.iter().map(|p| json_row(p, fields(p))).collect()).to_string()
}

/// `endpoint status`'s output: a row per member.
pub(crate) fn status_text(probes: &[Probe], out: Output) -> String {
    if out.json {
        return json_rows(probes, |p| {
            json!({
                "epoch": opt_json(&p.epoch),
                "map_epoch": opt_json(&p.map_epoch),
                "sessions": opt_json(&p.sessions),
                "nodes": opt_json(&p.nodes),
                "store_health": opt_json(&p.store_health),
                "version": opt_json(&p.version),
                "errors": p.errors,
            })
        });
    }
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            vec![
                p.endpoint.clone(),
                if p.name.is_empty() {
                    "-".into()
                } else {
                    p.name.clone()
                },
                p.role.clone(),
                dash(&p.epoch),
                dash(&p.map_epoch),
                dash(&p.sessions),
                dash(&p.nodes),
                dash(&p.store_health),
                dash(&p.version),
                p.errors.join("; "),
            ]
        })
        .collect();
    if out.table {
        return table(
            &[
                "endpoint",
                "name",
                "role",
                "epoch",
                "map epoch",
                "sessions",
                "nodes",
                "store",
                "version",
                "errors",
            ],
            &rows,
        );
    }
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            if r.last().is_some_and(String::is_empty) {
                r.pop();
            }
            r.join(", ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `endpoint health`'s output: a row per member.
pub(crate) fn health_text(probes: &[Probe], out: Output) -> String {
    let took = |p: &Probe| format!("{:.3}ms", p.took.as_secs_f64() * 1000.0);
    if out.json {
        return json_rows(probes, |p| {
            json!({
                "health": p.healthy,
                "took_ms": p.took.as_millis() as u64,
                "error": p.errors.join("; "),
            })
        });
    }
    if out.table {
        let rows: Vec<Vec<String>> = probes
            .iter()
            .map(|p| {
                vec![
                    p.endpoint.clone(),
                    p.role.clone(),
                    p.healthy.to_string(),
                    took(p),
                    p.errors.join("; "),
                ]
            })
            .collect();
        return table(&["endpoint", "role", "health", "took", "error"], &rows);
    }
    // etcdctl's lines: `ADDR is healthy: … took = …` / `ADDR is unhealthy: …`.
    probes
        .iter()
        .map(|p| {
            if p.healthy {
                format!("{} ({}) is healthy: took = {}", p.endpoint, p.role, took(p))
            } else {
                format!(
                    "{} ({}) is unhealthy: {}",
                    p.endpoint,
                    p.role,
                    p.errors.join("; ")
                )
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_offset_is_the_dev_layouts() {
        let l = warren_config::Layout::new(3, 2, 7100);
        let meta = l.meta_ports();
        assert_eq!(meta.admin - meta.grpc, DEFAULT_ADMIN_OFFSET);
        for k in 1..=3 {
            let c = l.cell_ports(k);
            assert_eq!(c.admin - c.grpc, DEFAULT_ADMIN_OFFSET);
        }
        for j in 1..=2 {
            let p = l.proxy_ports(j);
            assert_eq!(p.admin - p.grpc, DEFAULT_ADMIN_OFFSET);
        }
        assert_eq!(admin_addr("127.0.0.1:7100", 80).unwrap(), "127.0.0.1:7180");
        let f = admin_addr("localhost", 80).unwrap_err();
        assert!(f.message.contains("has no port"), "{}", f.message);
        assert!(admin_addr("h:65500", 80).is_err());
    }

    #[test]
    fn missing_numbers_print_as_a_dash_and_null() {
        let p = Probe {
            endpoint: "127.0.0.1:7201".into(),
            name: "p1".into(),
            role: "proxy".into(),
            map_epoch: Some(1),
            sessions: Some(2),
            version: Some("0.1.0".into()),
            healthy: true,
            ..Probe::default()
        };
        let simple = status_text(std::slice::from_ref(&p), Output::default());
        assert_eq!(simple, "127.0.0.1:7201, p1, proxy, -, 1, 2, -, -, 0.1.0");
        let v: Value = serde_json::from_str(&status_text(
            std::slice::from_ref(&p),
            Output {
                json: true,
                table: false,
            },
        ))
        .unwrap();
        assert_eq!(v[0]["epoch"], Value::Null);
        assert_eq!(v[0]["map_epoch"], 1);
    }
}
