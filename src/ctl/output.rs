//! Everything `warren ctl` prints on stdout, in its three forms (`-w simple|table|json`),
//! and its errors: a [`Record`] is a list of named fields printed as `key: value` lines
//! (simple), a two-column table (table) or one JSON object (json), so the forms of `stat`,
//! `status` and the rest are built once; lists print as [`table`]s. The formats themselves
//! are in the [module docs of `ctl`](super) and docs/ctl.md.

use serde_json::{json, Value};
use std::io::Write;
use warren_client::{DirEntry, Event, LocateInfo, NodeKind, Sequencer, Stat};
use warren_router::PartitionMap;

use super::failure::Failure;

/// `-w`/`--write-out`: the form of everything ctl prints (etcdctl's flag and names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `key: value` lines, one item per line; quiet commands print nothing.
    #[default]
    Simple,
    /// Bordered tables; quiet commands print what they did.
    Table,
    /// One compact JSON value per line; errors as `{"error":{"code","message"}}` on stderr.
    Json,
}

/// How to print: simple text (the default), tables, or one compact JSON value per line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Output {
    pub(crate) json: bool,
    pub(crate) table: bool,
}

impl Output {
    /// The output for `-w FORMAT`, with `--json` (its alias) winning.
    pub(crate) fn new(format: Format, json_alias: bool) -> Output {
        let json = json_alias || format == Format::Json;
        Output {
            json,
            table: !json && format == Format::Table,
        }
    }

    /// A record in this form.
    pub(crate) fn record(&self, record: &Record) -> String {
        if self.json {
            record.json().to_string()
        } else if self.table {
            record.table()
        } else {
            record.text()
        }
    }

    /// The result of a command that prints nothing in the simple form (`mkdir`, `put`,
    /// `rm`): nothing, or the record in the table and JSON forms.
    pub(crate) fn quiet(&self, record: &Record) -> Result<(), Failure> {
        if self.json || self.table {
            print_line(&self.record(record))?;
        }
        Ok(())
    }

    /// A failure, as it goes to stderr: `error: CODE: message`, or in JSON
    /// `{"error":{"code":CODE,"message":message}}`.
    pub(crate) fn error_text(&self, f: &Failure) -> String {
        if self.json {
            json!({"error": {"code": f.code, "message": f.message}}).to_string()
        } else {
            format!("error: {}: {}", f.code, f.message)
        }
    }
}

/// A bordered table (etcdctl's `-w table` look): `headers`, then one line per row.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule = widths
        .iter()
        .map(|w| "-".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("+");
    let rule = format!("+{rule}+");
    let line = |cells: Vec<String>| {
        let cells: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c}{} ", " ".repeat(w - c.chars().count())))
            .collect();
        format!("|{}|", cells.join("|"))
    };
    let mut out = vec![
        rule.clone(),
        line(headers.iter().map(|h| h.to_uppercase()).collect()),
        rule.clone(),
    ];
    for row in rows {
        out.push(line(row.clone()));
    }
    out.push(rule);
    out.join("\n")
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

    /// A two-column table, FIELD and VALUE, one row per field of the text form.
    pub(crate) fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .fields
            .iter()
            .filter_map(|f| f.text.as_ref().map(|t| vec![f.key.to_string(), t.clone()]))
            .collect();
        table(&["field", "value"], &rows)
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
        .field("checksum", checksum_text(stat.checksum))
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

/// A checksum as both forms show it: xxh3-64 as `0x` and 16 hex digits (a JSON number
/// would lose precision in JavaScript's doubles).
pub(crate) fn checksum_text(checksum: u64) -> String {
    format!("{checksum:#018x}")
}

/// `stat`'s record for the node at `path`.
pub(crate) fn stat_text(path: &str, stat: &Stat, out: Output) -> String {
    out.record(
        &Record::default()
            .field("path", path)
            .extend(stat_record(stat)),
    )
}

/// `ls`'s output (entries already sorted; a recursive listing names them by their path
/// under the listed directory); simple text needs at least one entry.
pub(crate) fn ls_text(entries: &[DirEntry], out: Output) -> String {
    if out.table {
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|e| {
                vec![
                    e.name.clone(),
                    e.stat.kind.as_str().to_string(),
                    e.stat.length.to_string(),
                    e.stat.child_count.to_string(),
                    e.stat.content_generation.to_string(),
                    e.stat.cell.clone(),
                ]
            })
            .collect();
        return table(
            &["name", "kind", "length", "children", "generation", "cell"],
            &rows,
        );
    }
    if out.json {
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

/// `status`'s output. A proxy has no cell, epoch or store of its own: those are `-` (JSON
/// `null`), not an empty name and 0; `warren ctl endpoint status` shows every member.
pub(crate) fn status_text(info: &LocateInfo, out: Output) -> String {
    let proxy = info.role == "proxy";
    let absent = |key: &'static str, r: Record, text: String, json: Value| {
        if proxy {
            r.text_only(key, "-".into()).json_only(key, Value::Null)
        } else {
            r.text_only(key, text).json_only(key, json)
        }
    };
    let r = Record::default().field("endpoint", info.endpoint.as_str());
    let r = absent("cell", r, info.cell.clone(), info.cell.as_str().into());
    let r = r.field("master", info.master.as_str());
    let r = absent("epoch", r, info.epoch.to_string(), info.epoch.into());
    let r = r
        .field("map_epoch", info.map_epoch)
        .field("deployment", info.deployment.as_str())
        .field("is_master", info.is_master)
        .field("serving", info.serving)
        .field("role", info.role.as_str())
        .field("replica", info.replica.as_str());
    let r = absent(
        "store_health",
        r,
        info.store_health.clone(),
        info.store_health.as_str().into(),
    );
    out.record(&r)
}

/// `lock`'s line once the lock is held: the sequencer alone in the simple form.
pub(crate) fn sequencer_text(sequencer: &Sequencer, out: Output) -> String {
    if !out.json && !out.table {
        return sequencer.to_string();
    }
    out.record(
        &Record::default()
            .field("sequencer", sequencer.to_string())
            .field("path", sequencer.path.as_str())
            .field("mode", sequencer.mode.as_str())
            .field("instance", sequencer.instance)
            .field("lock_generation", sequencer.lock_generation),
    )
}

/// `check-sequencer`'s line.
pub(crate) fn check_text(sequencer: &Sequencer, current: bool, out: Output) -> String {
    if out.json || out.table {
        out.record(
            &Record::default()
                .field("sequencer", sequencer.to_string())
                .field("current", current),
        )
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

    const SIMPLE: Output = Output {
        json: false,
        table: false,
    };
    const JSON: Output = Output {
        json: true,
        table: false,
    };
    const TABLE: Output = Output {
        json: false,
        table: true,
    };

    #[test]
    fn formats_from_the_flags() {
        assert!(Output::new(Format::Json, false).json);
        assert!(Output::new(Format::Simple, true).json, "--json is -w json");
        assert!(Output::new(Format::Table, false).table);
        let o = Output::new(Format::Simple, false);
        assert!(!o.json && !o.table);
    }

    #[test]
    fn errors_in_text_and_json() {
        let f = Failure::invalid("bad");
        assert_eq!(SIMPLE.error_text(&f), "error: INVALID_ARGUMENT: bad");
        let v: Value = serde_json::from_str(&JSON.error_text(&f)).expect("json");
        assert_eq!(
            v,
            json!({"error": {"code": "INVALID_ARGUMENT", "message": "bad"}})
        );
    }

    #[test]
    fn tables_align_their_columns() {
        assert_eq!(
            table(
                &["name", "n"],
                &[
                    vec!["a".into(), "10".into()],
                    vec!["long".into(), "2".into()]
                ]
            ),
            "+------+----+\n\
             | NAME | N  |\n\
             +------+----+\n\
             | a    | 10 |\n\
             | long | 2  |\n\
             +------+----+"
        );
        let text = stat_text("/ls/local/a", &stat(), TABLE);
        assert!(
            text.contains("| checksum           | 0x9a5d1e4f2b3c8d70 |"),
            "{text}"
        );
    }

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
        let text = stat_text("/ls/local/a", &stat(), SIMPLE);
        assert_eq!(
            text,
            "path: /ls/local/a\ncell: c1\nkind: file\ninstance: 3\ncontent_generation: 2\n\
             lock_generation: 0\nacl_generation: 0\nchecksum: 0x9a5d1e4f2b3c8d70\n\
             acl_read: (none)\nacl_write: admins\nacl_change_acl: (none)\nephemeral: false\n\
             child_count: 0\nlength: 5"
        );
        let v: Value =
            serde_json::from_str(&stat_text("/ls/local/a", &stat(), JSON)).expect("json");
        assert_eq!(v["path"], "/ls/local/a");
        assert_eq!(v["cell"], "c1");
        assert_eq!(v["kind"], "file");
        assert_eq!(v["content_generation"], 2);
        assert_eq!(
            v["checksum"], "0x9a5d1e4f2b3c8d70",
            "the same hex as the text"
        );
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
        assert_eq!(ls_text(&entries, SIMPLE), "a\nd/");
        let v: Value = serde_json::from_str(&ls_text(&entries, JSON)).expect("json");
        assert_eq!(v[1]["name"], "d");
        assert_eq!(v[1]["stat"]["kind"], "directory");
        assert_eq!(v[1]["stat"]["cell"], "c1");
        assert_eq!(ls_text(&[], JSON), "[]");
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
            status_text(&info, SIMPLE),
            "endpoint: 127.0.0.1:7100\ncell: local-0\nmaster: 127.0.0.1:7100\nepoch: 1\n\
             map_epoch: 0\ndeployment: local\nis_master: true\nserving: true\nrole: master\n\
             replica: \nstore_health: ok"
        );
        let v: Value = serde_json::from_str(&status_text(&info, JSON)).expect("json");
        assert_eq!(v["deployment"], "local");
        assert_eq!(v["serving"], true);
        assert_eq!(v["epoch"], 1);
        // A proxy: no cell, epoch or store of its own.
        let proxy = LocateInfo {
            cell: String::new(),
            epoch: 0,
            role: "proxy".into(),
            ..info
        };
        let text = status_text(&proxy, SIMPLE);
        assert!(
            text.contains("\ncell: -\n") && text.contains("\nepoch: -\n"),
            "{text}"
        );
        assert!(text.ends_with("store_health: -"), "{text}");
        let v: Value = serde_json::from_str(&status_text(&proxy, JSON)).expect("json");
        assert_eq!((&v["cell"], &v["epoch"]), (&Value::Null, &Value::Null));
        assert_eq!(v["map_epoch"], 0);
    }
}
