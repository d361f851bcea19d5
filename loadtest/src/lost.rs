//! The `acked_lost` check: which acknowledged writes a final read-back does not reflect.
//!
//! Every write the run sends is `SetContents` of a 64-byte body that names the run and
//! carries a per-file sequence number ([`body`]). When a write is acknowledged the run
//! records its sequence number and the `content_generation` of the reply's stat
//! ([`AckedWrites::record`]). After the window it reads each written file once more through
//! a fresh session and [`lost`] counts the acknowledged writes the file does not reflect.
//!
//! The generation, not the sequence number, orders writes: sequence numbers are taken when
//! a write is sent, so two overlapping writes to one file can be applied in either order
//! (both acknowledged, the later-numbered one first), and the file then rightly holds the
//! lower number. The generation the server gives each write is its order.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Bytes each write stores.
pub const WRITE_BYTES: usize = 64;
/// Digits of the sequence number in a body.
const SEQ_DIGITS: usize = 20;
/// Characters of the run id in a body.
const RUN_DIGITS: usize = 16;

/// The body of write `seq` of run `run`: `RUN(16 hex):SEQ(20 digits):`, padded with `w`
/// to [`WRITE_BYTES`].
pub fn body(run: u64, seq: u64) -> Vec<u8> {
    let mut b = format!("{run:0RUN_DIGITS$x}:{seq:0SEQ_DIGITS$}:").into_bytes();
    b.resize(WRITE_BYTES, b'w');
    b
}

/// The sequence number in `contents` if it is a body of run `run` (an empty file, another
/// run's body or anything else: `None`, no write of this run).
pub fn seq_of(run: u64, contents: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(contents.get(..RUN_DIGITS + 1 + SEQ_DIGITS)?).ok()?;
    let (r, seq) = s.split_once(':')?;
    if u64::from_str_radix(r, 16).ok()? != run {
        return None;
    }
    seq.parse().ok()
}

/// One acknowledged write: its sequence number and the content generation its reply's stat
/// carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub seq: u64,
    pub generation: u64,
}

/// What the read-back found in a file: its content generation, and the sequence number of
/// this run's write it holds (`None`: no write of this run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBack {
    pub generation: u64,
    pub seq: Option<u64>,
}

/// The acknowledged writes of a run, by file, and each file's next sequence number.
pub struct AckedWrites {
    /// This run's id, in every body.
    pub run: u64,
    next: Vec<AtomicU64>,
    acked: Mutex<BTreeMap<u64, Vec<Ack>>>,
}

impl AckedWrites {
    pub fn new(run: u64, files: u64) -> AckedWrites {
        AckedWrites {
            run,
            next: (0..files).map(|_| AtomicU64::new(0)).collect(),
            acked: Mutex::new(BTreeMap::new()),
        }
    }

    /// The next sequence number of `file` (from 1, in send order) and its write's body.
    pub fn next_body(&self, file: u64) -> (u64, Vec<u8>) {
        let seq = self.next[file as usize].fetch_add(1, Ordering::Relaxed) + 1;
        (seq, body(self.run, seq))
    }

    /// Records that write `seq` of `file` was acknowledged with this content generation.
    pub fn record(&self, file: u64, seq: u64, generation: u64) {
        self.acked
            .lock()
            .expect("acked lock")
            .entry(file)
            .or_default()
            .push(Ack { seq, generation });
    }

    /// The acknowledged writes, by file.
    pub fn take(&self) -> BTreeMap<u64, Vec<Ack>> {
        std::mem::take(&mut *self.acked.lock().expect("acked lock"))
    }
}

/// The outcome of the check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    /// Acknowledged writes the read-back does not reflect.
    pub writes: u64,
    /// Files with at least one such write.
    pub files: u64,
}

/// The acknowledged writes of one file that `read` does not reflect:
///
/// - every acknowledged write whose generation is newer than the file's: it was undone;
/// - when the file is at the generation of an acknowledged write, that write must be what
///   it holds (its sequence number): if not, the write counts as lost (its data is not
///   there).
///
/// A file newer than every acknowledged write is fine: a write whose reply never came (failed
/// or timed out, outcome unknown) may have landed.
pub fn lost_in_file(acked: &[Ack], read: ReadBack) -> u64 {
    let newer = acked
        .iter()
        .filter(|a| a.generation > read.generation)
        .count() as u64;
    let wrong = acked
        .iter()
        .filter(|a| a.generation == read.generation && read.seq != Some(a.seq))
        .count() as u64;
    newer + wrong
}

/// Sums [`lost_in_file`] over the files. A file with acknowledged writes but no read-back
/// (`reads` lacks it) is not counted here: the caller reports the failed read.
pub fn lost(acked: &BTreeMap<u64, Vec<Ack>>, reads: &HashMap<u64, ReadBack>) -> Lost {
    let mut out = Lost::default();
    for (file, acks) in acked {
        let Some(read) = reads.get(file) else {
            continue;
        };
        let n = lost_in_file(acks, *read);
        if n > 0 {
            out.writes += n;
            out.files += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, generation: u64) -> Ack {
        Ack { seq, generation }
    }

    fn read(generation: u64, seq: Option<u64>) -> ReadBack {
        ReadBack { generation, seq }
    }

    #[test]
    fn bodies_are_64_bytes_and_name_their_run_and_sequence() {
        let b = body(0xabc, 42);
        assert_eq!(b.len(), WRITE_BYTES);
        assert_eq!(seq_of(0xabc, &b), Some(42));
        assert_eq!(seq_of(0xabd, &b), None, "another run's write");
        assert_eq!(seq_of(0xabc, b""), None, "a file never written");
        assert_eq!(seq_of(0xabc, &[b'w'; WRITE_BYTES]), None);
        assert_eq!(seq_of(u64::MAX, &body(u64::MAX, u64::MAX)), Some(u64::MAX));
    }

    #[test]
    fn sequence_numbers_are_per_file_and_in_order() {
        let w = AckedWrites::new(7, 2);
        assert_eq!(w.next_body(0).0, 1);
        assert_eq!(w.next_body(0).0, 2);
        assert_eq!(w.next_body(1).0, 1);
        let (seq, b) = w.next_body(1);
        assert_eq!(seq_of(7, &b), Some(seq));
        w.record(1, 2, 5);
        w.record(0, 1, 3);
        let acked = w.take();
        assert_eq!(acked[&0], vec![ack(1, 3)]);
        assert_eq!(acked[&1], vec![ack(2, 5)]);
        assert!(w.take().is_empty());
    }

    #[test]
    fn the_comparison() {
        let mut acked = BTreeMap::new();
        let mut reads = HashMap::new();
        // File 0: holds the last acknowledged write.
        acked.insert(0, vec![ack(1, 1), ack(2, 2)]);
        reads.insert(0, read(2, Some(2)));
        // File 1: no acknowledged write (all failed); whatever it holds is fine.
        reads.insert(1, read(3, Some(9)));
        // File 2: newer than acknowledged: an unacknowledged write landed. Fine.
        acked.insert(2, vec![ack(1, 1)]);
        reads.insert(2, read(2, Some(2)));
        // File 3: overlapping writes applied out of send order: seq 5 (generation 4)
        // then seq 4 (generation 5). The file holds seq 4, the later write. Fine.
        acked.insert(3, vec![ack(5, 4), ack(4, 5)]);
        reads.insert(3, read(5, Some(4)));
        // File 4: two acknowledged writes undone (generations 3 and 4).
        acked.insert(4, vec![ack(1, 2), ack(2, 3), ack(3, 4)]);
        reads.insert(4, read(2, Some(1)));
        // File 5: at the last acknowledged write's generation but holding other data.
        acked.insert(5, vec![ack(1, 1), ack(2, 2)]);
        reads.insert(5, read(2, Some(1)));
        // File 6: back to empty (no write of this run) at generation 0.
        acked.insert(6, vec![ack(1, 1)]);
        reads.insert(6, read(0, None));
        // File 7: read back failed: not counted here.
        acked.insert(7, vec![ack(1, 1)]);

        assert_eq!(lost_in_file(&acked[&0], reads[&0]), 0);
        assert_eq!(lost_in_file(&[], reads[&1]), 0);
        assert_eq!(lost_in_file(&acked[&2], reads[&2]), 0);
        assert_eq!(lost_in_file(&acked[&3], reads[&3]), 0);
        assert_eq!(lost_in_file(&acked[&4], reads[&4]), 2);
        assert_eq!(lost_in_file(&acked[&5], reads[&5]), 1);
        assert_eq!(lost_in_file(&acked[&6], reads[&6]), 1);
        assert_eq!(
            lost(&acked, &reads),
            Lost {
                writes: 4,
                files: 3
            }
        );
        assert_eq!(lost(&BTreeMap::new(), &reads), Lost::default());
    }
}
