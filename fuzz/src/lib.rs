//! Warren's coverage-guided fuzz targets (docs/fuzzing.md): one function per target, each
//! taking arbitrary bytes through the decoding and checking the servers really do, to the
//! edge of I/O. The `cargo afl` binaries in `src/bin/` are thin wrappers over them
//! ([`main`]); the same functions replay the committed corpus in plain `#[test]`s
//! (`tests/corpus.rs`), so every input ever found interesting, and every crash turned into
//! a regression, runs in the normal test run.
//!
//! A target must never panic, hang or allocate without bound, whatever the input: errors
//! are the expected outcome for most inputs. Targets that take a sequence of calls
//! ([`cell`], [`proxy`], [`router`], [`store`]) read their input as [`Frames`].

pub mod cell;
pub mod config;
pub mod map;
pub mod proxy;
pub mod router;
pub mod seeds;
pub mod store;

use std::path::Path;

/// A target's function: runs one input.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary and of its corpus directory
/// (`fuzz/corpus/<name>/`).
pub const TARGETS: [(&str, Target); 6] = [
    ("cell_requests", cell::run),
    ("proxy_requests", proxy::run),
    ("router", router::run),
    ("partition_map", map::run),
    ("config", config::run),
    ("store_records", store::run),
];

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The most frames one input is read as: keeps every run short (a hang would be a finding,
/// so the input alone must not make a run long).
pub const MAX_FRAMES: usize = 64;

/// One call of a framed input: `tag` picks what is called, `flags` how the harness fills
/// it in, `body` is the call's bytes (a protobuf message, a path, a record…).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub tag: u8,
    pub flags: u8,
    pub body: &'a [u8],
}

/// An input read as frames: `tag`, `flags`, a little-endian `u16` body length, the body.
/// A body cut short by the end of the input is the rest of the input, so every input is
/// some sequence of frames; at most [`MAX_FRAMES`] are read.
pub struct Frames<'a> {
    rest: &'a [u8],
    read: usize,
}

impl<'a> Frames<'a> {
    pub fn new(input: &'a [u8]) -> Self {
        Frames {
            rest: input,
            read: 0,
        }
    }

    /// Encodes frames in this format (the seed corpora are made with it).
    pub fn encode(frames: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(tag, flags, body) in frames {
            let len = u16::try_from(body.len()).expect("a seed frame's body fits in u16");
            out.extend_from_slice(&[tag, flags]);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(body);
        }
        out
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.rest.len() < 2 || self.read >= MAX_FRAMES {
            return None;
        }
        self.read += 1;
        let (tag, flags) = (self.rest[0], self.rest[1]);
        let rest = &self.rest[2..];
        let (len, rest) = match rest {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            _ => (rest.len(), &rest[rest.len()..]),
        };
        let (body, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some(Frame { tag, flags, body })
    }
}

/// A body split in two at the length its first byte gives (a key and a value, a path and
/// a deployment…); short bodies give short or empty parts.
pub fn split(body: &[u8]) -> (&[u8], &[u8]) {
    match body.split_first() {
        None => (&[], &[]),
        Some((&n, rest)) => rest.split_at(usize::from(n).min(rest.len())),
    }
}

/// The body of a target binary. Built by `cargo afl build` (`--cfg fuzzing`): AFL++'s
/// persistent loop over `target`. Built plainly: runs `target` on each file named on the
/// command line (to reproduce a crash: `cargo run -p warren-fuzz --bin NAME -- FILE`).
pub fn main(target: Target) {
    #[cfg(fuzzing)]
    afl::fuzz!(|data: &[u8]| target(data));
    #[cfg(not(fuzzing))]
    for file in std::env::args_os().skip(1) {
        let data = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", Path::new(&file).display()));
        target(&data);
        println!("{}: ok", Path::new(&file).display());
    }
}

/// Runs `target` on every file under `dir` (a corpus directory), returning how many; a
/// missing directory is an error naming it.
pub fn replay_dir(target: Target, dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        if entry.file_type()?.is_file() {
            target(&std::fs::read(entry.path())?);
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_tolerate_truncation() {
        let input = Frames::encode(&[(1, 2, b"abc"), (3, 4, b"")]);
        let got: Vec<_> = Frames::new(&input)
            .map(|f| (f.tag, f.flags, f.body.to_vec()))
            .collect();
        assert_eq!(got, vec![(1, 2, b"abc".to_vec()), (3, 4, vec![])]);
        // A length past the end takes the rest; a lone byte is no frame.
        let cut: Vec<_> = Frames::new(&[9, 9, 200, 0, 1, 2]).map(|f| f.body).collect();
        assert_eq!(cut, vec![&[1u8, 2][..]]);
        assert_eq!(Frames::new(&[7]).count(), 0);
        // At most MAX_FRAMES.
        assert_eq!(Frames::new(&[0u8; 1000]).count(), MAX_FRAMES);
    }

    #[test]
    fn split_takes_the_length_from_the_first_byte() {
        assert_eq!(split(b"\x02abcd"), (&b"ab"[..], &b"cd"[..]));
        assert_eq!(split(b"\x09ab"), (&b"ab"[..], &b""[..]));
        assert_eq!(split(b""), (&b""[..], &b""[..]));
    }
}
