//! Everything `warren ctl` prints on stdout, in text and in JSON (`--json`), in one place:
//! a [`Record`] is a list of named fields printed either as `key: value` lines or as one
//! JSON object, so the text and JSON forms of `stat`, `status` and the rest are built once;
//! the formats themselves are in the [module docs of `ctl`](super).

use serde_json::{json, Value};
use std::io::Write;
use warren_client::{DirEntry, Event, LocateInfo, NodeKind, Sequencer, Stat};
use warren_router::PartitionMap;

use super::failure::Failure;

/// How to print: text (the default) or one compact JSON value per line (`--json`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Output {
    pub(crate) json: bool,
}

/// Prints `text` and a newline to stdout, flushed (for `lock`, a script waits on it).
pub(crate) fn print_line(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::io("cannot write to stdout", e))
}

/// Writes `bytes` to stdout as they are, nothing added, flushed (`cat`).
pub(crate) fn write_raw(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::io("cannot write to stdout", e))
}

/// One field of a [`Record`]: its text form (`None`: not in the text), its JSON value
/// (`None`: not in the JSON).
struct Field {
    key: &'static str,
    text: Option<String>,
    json: Option<Value>,
}

/// An ordered list of named fields, printed as `key: value` lines (in order) or as one
/// JSON object.
#[derive(Default)]
pub(crate) struct Record {
    fields: Vec<Field>,
}

impl Record {
    /// A field printed the same way in both forms.
    pub(crate) fn field(mut self, key: &'static str, value: impl Into<Value> + ToString) -> Self {
        self.fields.push(Field {
            key,
            text: Some(value.to_string()),
            json: Some(value.into()),
        });
        self
    }

    /// A field only the text form shows.
    pub(crate) fn text_only(mut self, key: &'static str, text: String) -> Self {
        self.fields.push(Field {
            key,
            text: Some(text),
            json: None,
        });
        self
    }

    /// A field only the JSON form shows.
    pub(crate) fn json_only(mut self, key: &'static str, json: Value) -> Self {
        self.fields.push(Field {
            key,
            text: None,
            json: Some(json),
        });
        self
    }

    /// The fields of `other` after these.
    pub(crate) fn extend(mut self, other: Record) -> Self {
        self.fields.extend(other.fields);
        self
    }

    /// `key: value` lines.
    pub(crate) fn text(&self) -> String {
        self.fields
            .iter()
            .filter_map(|f| f.text.as_ref().map(|t| format!("{}: {t}", f.key)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// One JSON object.
    pub(crate) fn json(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .filter_map(|f| f.json.clone().map(|v| (f.key.to_owned(), v)))
                .collect(),
        )
    }

    /// [`text`](Self::text), or [`json`](Self::json) as compact text.
    pub(crate) fn render(&self, json: bool) -> String {
        if json {
            self.json().to_string()
        } else {
            self.text()
        }
    }
}

/// A node's metadata; `(none)` in the text for an ACL name that is unset.
fn stat_record(stat: &Stat) -> Record {
    let acl = |name: &str| {
        if name.is_empty() {
            "(none)".to_string()
        } else {
            name.to_string()
        }
    };
    Record::default()
        .field("cell", stat.cell.as_str())
        .field("kind", stat.kind.as_str())
        .field("instance", stat.instance)
        .field("content_generation", stat.content_generation)
        .field("lock_generation", stat.lock_generation)
        .field("acl_generation", stat.acl_generation)
        .text_only("checksum", format!("{:#018x}", stat.checksum))
        .json_only("checksum", json!(stat.checksum))
        .text_only("acl_read", acl(&stat.acl.read))
        .text_only("acl_write", acl(&stat.acl.write))
        .text_only("acl_change_acl", acl(&stat.acl.change_acl))
        .json_only(
            "acl",
            json!({
                "read": stat.acl.read,
                "write": stat.acl.write,
                "change_acl": stat.acl.change_acl,
            }),
        )
        .field("ephemeral", stat.ephemeral)
        .field("child_count", stat.child_count)
        .field("length", stat.length)
}

/// `stat`'s output for the node at `path`.
pub(crate) fn stat_text(path: &str, stat: &Stat, json: bool) -> String {
    Record::default()
        .field("path", path)
        .extend(stat_record(stat))
        .render(json)
}

/// `ls`'s output (entries already sorted); text mode needs at least one entry.
pub(crate) fn ls_text(entries: &[DirEntry], json: bool) -> String {
    if json {
        return Value::Array(
            entries
                .iter()
                .map(|e| json!({"name": e.name, "stat": stat_record(&e.stat).json()}))
                .collect(),
        )
        .to_string();
    }
    entries
        .iter()
        .map(|e| match e.stat.kind {
            NodeKind::Directory => format!("{}/", e.name),
            NodeKind::File => e.name.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `status`'s output.
pub(crate) fn status_text(info: &LocateInfo, json: bool) -> String {
    Record::default()
        .field("endpoint", info.endpoint.as_str())
        .field("cell", info.cell.as_str())
        .field("master", info.master.as_str())
        .field("epoch", info.epoch)
        .field("map_epoch", info.map_epoch)
        .field("deployment", info.deployment.as_str())
        .field("is_master", info.is_master)
        .field("serving", info.serving)
        .field("role", info.role.as_str())
        .field("replica", info.replica.as_str())
        .field("store_health", info.store_health.as_str())
        .render(json)
}

/// `lock`'s line once the lock is held.
pub(crate) fn sequencer_text(sequencer: &Sequencer, json: bool) -> String {
    if !json {
        return sequencer.to_string();
    }
    json!({
        "sequencer": sequencer.to_string(),
        "path": sequencer.path,
        "mode": sequencer.mode.as_str(),
        "instance": sequencer.instance,
        "lock_generation": sequencer.lock_generation,
    })
    .to_string()
}

/// `check-sequencer`'s line.
pub(crate) fn check_text(sequencer: &Sequencer, current: bool, json: bool) -> String {
    if json {
        json!({"sequencer": sequencer.to_string(), "current": current}).to_string()
    } else if current {
        "current".to_string()
    } else {
        "stale".to_string()
    }
}

/// One `watch` line.
pub(crate) fn event_text(event: &Event, json: bool) -> String {
    if !json {
        return event.to_string();
    }
    let mut value = json!({"event": event.name()});
    if let Value::Object(map) = &mut value {
        if let Some(path) = event.path() {
            map.insert("path".into(), Value::String(path.to_string()));
        }
        if let Event::ChildChanged { child, change, .. } = event {
            map.insert("child".into(), Value::String(child.clone()));
            map.insert("change".into(), Value::String(change.as_str().to_string()));
        }
    }
    value.to_string()
}

/// `map show`'s text.
pub(crate) fn map_text(map: &PartitionMap) -> String {
    let mut lines = vec![
        format!("deployment: {}", map.deployment()),
        format!("map_epoch: {}", map.map_epoch()),
        format!("slots: {}", map.slot_count()),
    ];
    for (cell, count) in map.slot_counts() {
        let ranges: Vec<String> = map
            .slot_ranges(&cell)
            .iter()
            .map(|r| format!("{}-{}", r.start(), r.end()))
            .collect();
        let ranges = if ranges.is_empty() {
            "none".to_owned()
        } else {
            ranges.join(",")
        };
        let replicas = map.replicas(&cell).unwrap_or_default().join(",");
        lines.push(format!(
            "cell {cell}: {count} slots (ranges {ranges}) replicas {replicas}"
        ));
    }
    lines.join("\n")
}

/// `deployment init`'s text once the map is written.
pub(crate) fn initialised_text(map: &PartitionMap) -> String {
    format!(
        "initialised deployment {}: map epoch {}, {} slots over {} cells",
        map.deployment(),
        map.map_epoch(),
        map.slot_count(),
        map.cells().len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_client::{AclNames, ChildChange};

    fn stat() -> Stat {
        Stat {
            kind: NodeKind::File,
            instance: 3,
            content_generation: 2,
            lock_generation: 0,
            acl_generation: 0,
            checksum: 0x9a5d_1e4f_2b3c_8d70,
            acl: AclNames {
                read: String::new(),
                write: "admins".into(),
                change_acl: String::new(),
            },
            ephemeral: false,
            child_count: 0,
            length: 5,
            cell: "c1".into(),
        }
    }

    #[test]
    fn map_formats() {
        let map = PartitionMap::even(
            "local",
            &[
                ("a", vec!["127.0.0.1:7001"]),
                ("b", vec!["127.0.0.1:7002", "127.0.0.1:7012"]),
                ("c", vec!["127.0.0.1:7003"]),
            ],
            2,
        )
        .unwrap();
        assert_eq!(
            map_text(&map),
            "deployment: local\nmap_epoch: 1\nslots: 2\n\
             cell a: 1 slots (ranges 0-0) replicas 127.0.0.1:7001\n\
             cell b: 1 slots (ranges 1-1) replicas 127.0.0.1:7002,127.0.0.1:7012\n\
             cell c: 0 slots (ranges none) replicas 127.0.0.1:7003"
        );
        assert_eq!(
            warren_client::map::map_path("local"),
            "/ls/local/warren/map"
        );
    }

    #[test]
    fn stat_formats() {
        let text = stat_text("/ls/local/a", &stat(), false);
        assert_eq!(
            text,
            "path: /ls/local/a\ncell: c1\nkind: file\ninstance: 3\ncontent_generation: 2\n\
             lock_generation: 0\nacl_generation: 0\nchecksum: 0x9a5d1e4f2b3c8d70\n\
             acl_read: (none)\nacl_write: admins\nacl_change_acl: (none)\nephemeral: false\n\
             child_count: 0\nlength: 5"
        );
        let v: Value =
            serde_json::from_str(&stat_text("/ls/local/a", &stat(), true)).expect("json");
        assert_eq!(v["path"], "/ls/local/a");
        assert_eq!(v["cell"], "c1");
        assert_eq!(v["kind"], "file");
        assert_eq!(v["content_generation"], 2);
        assert_eq!(v["checksum"], 0x9a5d_1e4f_2b3c_8d70u64);
        assert_eq!(v["acl"]["write"], "admins");
        assert_eq!(v["length"], 5);
    }

    #[test]
    fn ls_formats() {
        let entries = vec![
            DirEntry {
                name: "a".into(),
                stat: stat(),
            },
            DirEntry {
                name: "d".into(),
                stat: Stat {
                    kind: NodeKind::Directory,
                    ..stat()
                },
            },
        ];
        assert_eq!(ls_text(&entries, false), "a\nd/");
        let v: Value = serde_json::from_str(&ls_text(&entries, true)).expect("json");
        assert_eq!(v[1]["name"], "d");
        assert_eq!(v[1]["stat"]["kind"], "directory");
        assert_eq!(v[1]["stat"]["cell"], "c1");
        assert_eq!(ls_text(&[], true), "[]");
    }

    #[test]
    fn event_formats() {
        let e = Event::ChildChanged {
            path: "/ls/local/d".into(),
            child: "x".into(),
            change: ChildChange::Added,
        };
        assert_eq!(event_text(&e, false), "child_changed /ls/local/d added x");
        let v: Value = serde_json::from_str(&event_text(&e, true)).expect("json");
        assert_eq!(
            v,
            json!({"event": "child_changed", "path": "/ls/local/d", "child": "x", "change": "added"})
        );
        assert_eq!(
            event_text(&Event::MasterFailover, true),
            r#"{"event":"master_failover"}"#
        );
        assert_eq!(
            event_text(
                &Event::ContentsModified {
                    path: "/ls/local/a".into()
                },
                false
            ),
            "contents_modified /ls/local/a"
        );
    }

    #[test]
    fn status_formats() {
        let info = LocateInfo {
            endpoint: "127.0.0.1:7100".into(),
            cell: "local-0".into(),
            master: "127.0.0.1:7100".into(),
            epoch: 1,
            map_epoch: 0,
            deployment: "local".into(),
            is_master: true,
            serving: true,
            role: "master".into(),
            replica: String::new(),
            store_health: "ok".into(),
        };
        assert_eq!(
            status_text(&info, false),
            "endpoint: 127.0.0.1:7100\ncell: local-0\nmaster: 127.0.0.1:7100\nepoch: 1\n\
             map_epoch: 0\ndeployment: local\nis_master: true\nserving: true\nrole: master\n\
             replica: \nstore_health: ok"
        );
        let v: Value = serde_json::from_str(&status_text(&info, true)).expect("json");
        assert_eq!(v["deployment"], "local");
        assert_eq!(v["serving"], true);
    }
}
