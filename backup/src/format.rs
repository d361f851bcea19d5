//! The data object of a backup (docs/backup.md, "Format"): a cell's store [`Snapshot`]
//! as a stream of records, written and read one record at a time.
//!
//! ```text
//! WARREN-BACKUP 1\n                                   the magic line and format version
//! {"meta":{…MetaRecord…}}\n                            at most one
//! {"node":{…NodeRecord…}}\n                            one per node
//! {"contents":{"path":"/ls/…","len":N}}\n<N bytes>\n   one per file with contents
//! {"session":{…SessionRecord…}}\n                      one per session
//! {"staged":{"key":"…","len":N}}\n<N bytes>\n          one per staged reshard record
//! {"end":{"records":R}}\n                              R records before it; nothing after
//! ```
//!
//! Headers are JSON lines (the records as the stores write them); file contents and
//! staged values follow their header as raw bytes, so a backup is no larger than what it
//! holds. The `end` record makes a cut-off data object an error rather than a smaller
//! cell. Every bound a reader relies on (header length, value length) is checked, so a
//! corrupt object is an error naming the record, never a panic or a huge allocation.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use warren_cell::store::{MetaRecord, NodeRecord, SessionRecord, Snapshot};

/// The first line of every data object.
pub const MAGIC: &str = "WARREN-BACKUP";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The longest header line read (a node record with its holders is far smaller).
const MAX_HEADER_BYTES: usize = 16 * 1024 * 1024;
/// The largest value read after a header (files are at most 256 KiB; staged reshard
/// records hold one node each).
const MAX_VALUE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("reading or writing the data object failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the data object is not a Warren backup of a format this build reads: {0}")]
    Format(String),
    #[error("the data object is corrupt at record {record}: {detail}")]
    Corrupt { record: u64, detail: String },
}

/// One record's header line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Header {
    Meta(MetaRecord),
    Node(NodeRecord),
    Contents { path: String, len: u64 },
    Session(SessionRecord),
    Staged { key: String, len: u64 },
    End { records: u64 },
}

/// What a data object holds, counted as it is written or read (the manifest's counts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub nodes: u64,
    pub directories: u64,
    pub files: u64,
    /// File content bytes.
    pub bytes: u64,
    pub sessions: u64,
    /// Lock holders recorded on nodes (a shared lock counts each holder).
    pub held_locks: u64,
    pub ephemeral: u64,
    /// Staged reshard records (non-zero: a reshard was in progress).
    pub staged: u64,
}

impl Counts {
    /// The counts of `snap`.
    pub fn of(snap: &Snapshot) -> Counts {
        let mut c = Counts::default();
        for n in &snap.nodes {
            c.add_node(n);
        }
        c.bytes = snap.contents.iter().map(|(_, d)| d.len() as u64).sum();
        c.sessions = snap.sessions.len() as u64;
        c.staged = snap.staged.len() as u64;
        c
    }

    fn add_node(&mut self, n: &NodeRecord) {
        self.nodes += 1;
        match n.meta.kind {
            warren_cell::store::NodeKind::File => self.files += 1,
            warren_cell::store::NodeKind::Directory => self.directories += 1,
        }
        self.held_locks += n.holders.len() as u64;
        self.ephemeral += u64::from(n.meta.ephemeral);
    }
}

/// Writes `snap` to `out` in the format above and returns its counts.
pub fn encode(snap: &Snapshot, out: &mut impl Write) -> Result<Counts, FormatError> {
    let records = std::cell::Cell::new(0u64);
    let header = |out: &mut dyn Write, h: &Header| -> Result<(), FormatError> {
        serde_json::to_writer(&mut *out, h)
            .map_err(|e| FormatError::Format(format!("cannot encode a record: {e}")))?;
        out.write_all(b"\n")?;
        records.set(records.get() + 1);
        Ok(())
    };
    writeln!(out, "{MAGIC} {FORMAT_VERSION}")?;
    if let Some(m) = &snap.meta {
        header(out, &Header::Meta(m.clone()))?;
    }
    for n in &snap.nodes {
        header(out, &Header::Node(n.clone()))?;
    }
    for (path, data) in &snap.contents {
        header(
            out,
            &Header::Contents {
                path: path.clone(),
                len: data.len() as u64,
            },
        )?;
        out.write_all(data)?;
        out.write_all(b"\n")?;
    }
    for s in &snap.sessions {
        header(out, &Header::Session(s.clone()))?;
    }
    for (key, value) in &snap.staged {
        header(
            out,
            &Header::Staged {
                key: key.clone(),
                len: value.len() as u64,
            },
        )?;
        out.write_all(value)?;
        out.write_all(b"\n")?;
    }
    header(
        out,
        &Header::End {
            records: records.get(),
        },
    )?;
    out.flush()?;
    Ok(Counts::of(snap))
}

/// Reads a whole data object from `input`, checking every record, the `end` record and
/// that nothing follows it.
pub fn decode(input: &mut impl BufRead) -> Result<(Snapshot, Counts), FormatError> {
    let mut magic = Vec::new();
    read_line(input, &mut magic, 64).map_err(|e| match e {
        FormatError::Corrupt { .. } => FormatError::Format("no magic line".into()),
        e => e,
    })?;
    let want = format!("{MAGIC} {FORMAT_VERSION}");
    match std::str::from_utf8(&magic) {
        Ok(m) if m == want => {}
        Ok(m) if m.starts_with(MAGIC) => {
            return Err(FormatError::Format(format!(
                "format {:?}, this build reads {FORMAT_VERSION}; restore with a build of the \
                 Warren version named in the manifest",
                m[MAGIC.len()..].trim()
            )))
        }
        _ => return Err(FormatError::Format("the magic line is missing".into())),
    }
    let mut snap = Snapshot::default();
    let mut line = Vec::new();
    let mut record = 0u64;
    loop {
        let corrupt = |detail: String| FormatError::Corrupt { record, detail };
        line.clear();
        let n = read_line(input, &mut line, MAX_HEADER_BYTES)?;
        if n == 0 {
            return Err(corrupt(
                "the data object ends without its end record (cut off?)".into(),
            ));
        }
        let h: Header = serde_json::from_slice(&line)
            .map_err(|e| corrupt(format!("header is not a record: {e}")))?;
        match h {
            Header::Meta(m) => {
                if snap.meta.replace(m).is_some() {
                    return Err(corrupt("a second meta record".into()));
                }
            }
            Header::Node(n) => snap.nodes.push(n),
            Header::Contents { path, len } => {
                let data = read_value(input, len).map_err(&corrupt)?;
                snap.contents.push((path, data));
            }
            Header::Session(s) => snap.sessions.push(s),
            Header::Staged { key, len } => {
                let data = read_value(input, len).map_err(&corrupt)?;
                snap.staged.push((key, data));
            }
            Header::End { records } => {
                if records != record {
                    return Err(corrupt(format!(
                        "the end record counts {records} records, the object holds {record}"
                    )));
                }
                let mut rest = [0u8; 1];
                if input.read(&mut rest)? != 0 {
                    return Err(corrupt("bytes follow the end record".into()));
                }
                let counts = Counts::of(&snap);
                return Ok((snap, counts));
            }
        }
        record += 1;
    }
}

/// Reads one `\n`-terminated line (without it) of at most `max` bytes into `buf`;
/// returns 0 at a clean end of input.
fn read_line(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<usize, FormatError> {
    let n = std::io::Read::take(&mut *input, max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(0);
    }
    if buf.last() != Some(&b'\n') {
        return Err(FormatError::Corrupt {
            record: 0,
            detail: if n > max {
                format!("a header line is longer than {max} bytes")
            } else {
                "the last line is cut off".into()
            },
        });
    }
    buf.pop();
    Ok(n)
}

/// Reads `len` raw bytes and the `\n` after them.
fn read_value(input: &mut impl BufRead, len: u64) -> Result<Vec<u8>, String> {
    if len > MAX_VALUE_BYTES {
        return Err(format!(
            "a value of {len} bytes (at most {MAX_VALUE_BYTES} are read)"
        ));
    }
    let mut data = vec![0u8; len as usize];
    input
        .read_exact(&mut data)
        .map_err(|e| format!("a value of {len} bytes is cut off: {e}"))?;
    let mut nl = [0u8; 1];
    input
        .read_exact(&mut nl)
        .map_err(|_| "a value is not followed by its newline".to_string())?;
    if nl[0] != b'\n' {
        return Err(format!(
            "a value of {len} bytes is not followed by a newline (its length is wrong)"
        ));
    }
    Ok(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use warren_cell::store::{AclNames, LockHolder, LockMode, NodeKind, NodeMeta, SessionRecord};

    pub(crate) fn sample() -> Snapshot {
        let node = |path: &str, kind: NodeKind, gen: u64| NodeRecord {
            path: path.into(),
            meta: NodeMeta {
                kind,
                instance: gen,
                content_generation: gen,
                lock_generation: gen + 1,
                acl_generation: gen + 2,
                checksum: 7,
                acl: AclNames::default(),
                ephemeral: false,
            },
            holders: Vec::new(),
            anchor: false,
            anchor_pending: None,
        };
        let mut locked = node("/ls/local/a", NodeKind::File, 5);
        locked.holders.push(LockHolder {
            session: [3; 16],
            handle_epoch: 2,
            handle: 9,
            mode: LockMode::Exclusive,
            lock_delay_ms: 1000,
        });
        Snapshot {
            meta: Some(MetaRecord {
                epoch: 4,
                secret: [9; 32],
                next_instance: 10,
                deployment: "local".into(),
                cell: "c0".into(),
                max_lease_granted_ms: 12_000,
                max_proxy_lease_granted_ms: 20_000,
                pending_unlinks: Vec::new(),
                handed_off: Vec::new(),
                foreign_keys: Default::default(),
                lost_epochs: Vec::new(),
            }),
            nodes: vec![node("/ls/local", NodeKind::Directory, 1), locked],
            // Contents with newlines and every byte value: raw bytes survive.
            contents: vec![("/ls/local/a".into(), (0..=255u8).chain(*b"\n\n").collect())],
            sessions: vec![SessionRecord {
                id: [3; 16],
                secret: [4; 16],
                principal: "alice".into(),
                ..Default::default()
            }],
            staged: vec![("7//ls/local/b".into(), b"opaque\nvalue".to_vec())],
        }
    }

    fn round_trip(snap: &Snapshot) -> (Vec<u8>, Snapshot) {
        let mut buf = Vec::new();
        encode(snap, &mut buf).unwrap();
        let (back, _) = decode(&mut &buf[..]).unwrap();
        (buf, back)
    }

    #[test]
    fn round_trips_every_record_kind_with_raw_contents() {
        let snap = sample();
        let (buf, back) = round_trip(&snap);
        assert_eq!(back, snap);
        // Raw bytes, not base64: the object is barely larger than what it holds.
        let raw: usize = snap.contents.iter().map(|(_, d)| d.len()).sum();
        assert!(buf.windows(raw).any(|w| w == &snap.contents[0].1[..]));
        let c = Counts::of(&snap);
        assert_eq!(
            (c.nodes, c.files, c.directories, c.held_locks),
            (2, 1, 1, 1)
        );
        assert_eq!((c.bytes, c.sessions, c.staged), (258, 1, 1));
    }

    #[test]
    fn empty_snapshot_round_trips() {
        assert_eq!(round_trip(&Snapshot::default()).1, Snapshot::default());
    }

    #[test]
    fn a_cut_off_object_is_refused_at_every_length() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf).unwrap();
        for len in 0..buf.len() {
            let r = decode(&mut &buf[..len]);
            assert!(
                r.is_err(),
                "an object cut to {len} of {} bytes was accepted",
                buf.len()
            );
        }
    }

    #[test]
    fn trailing_bytes_wrong_counts_and_lengths_are_refused() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf).unwrap();
        let mut extra = buf.clone();
        extra.extend_from_slice(b"x");
        let e = decode(&mut &extra[..]).unwrap_err().to_string();
        assert!(e.contains("follow the end record"), "{e}");

        // Byte-wise replace (the contents are not UTF-8).
        let replace = |from: &str, to: &str| {
            let (from, to) = (from.as_bytes(), to.as_bytes());
            let at = buf.windows(from.len()).position(|w| w == from).unwrap();
            let mut b = buf[..at].to_vec();
            b.extend_from_slice(to);
            b.extend_from_slice(&buf[at + from.len()..]);
            b
        };
        let wrong_end = replace("{\"end\":{\"records\":6}}", "{\"end\":{\"records\":5}}");
        let e = decode(&mut &wrong_end[..]).unwrap_err().to_string();
        assert!(e.contains("counts 5 records"), "{e}");

        let wrong_len = replace("\"len\":12", "\"len\":11");
        let e = decode(&mut &wrong_len[..]).unwrap_err().to_string();
        assert!(e.contains("not followed by a newline"), "{e}");

        let huge = replace("\"len\":12", "\"len\":99999999999");
        let e = decode(&mut &huge[..]).unwrap_err().to_string();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn another_format_version_is_refused_by_name() {
        let e = decode(&mut &b"WARREN-BACKUP 9\n"[..])
            .unwrap_err()
            .to_string();
        assert!(e.contains("format \"9\""), "{e}");
        let e = decode(&mut &b"PK\x03\x04"[..]).unwrap_err().to_string();
        assert!(e.contains("not a Warren backup"), "{e}");
    }
}
