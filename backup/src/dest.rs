//! Where backups go (docs/backup.md, "Destinations"): a directory, or an S3-compatible
//! object store (`s3://bucket/prefix`, through `object_store`). Objects are named by
//! `/`-separated keys under the destination's root, the same layout in both:
//! `<deployment>/<cell>/<UTC-time>-e<epoch>/{data,manifest.json}` and
//! `<deployment>/sets/<id>.json`.
//!
//! Every write is whole or absent: in a directory, a temporary name renamed into place
//! after an fsync; in S3, one PUT. The manifest, written last, is what makes a backup exist.

use object_store::ObjectStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum DestError {
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {detail}")]
    Io { what: String, detail: String },
}

/// A backup destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A directory on a local or mounted file system.
    Dir(PathBuf),
    /// A bucket (and key prefix) of an S3-compatible object store.
    S3(S3),
}

/// `s3://bucket/prefix`: the client built from the `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT` for
/// a server other than AWS, `AWS_ALLOW_HTTP=true` for a plain-HTTP one).
#[derive(Clone)]
pub struct S3 {
    url: String,
    prefix: String,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3").field("url", &self.url).finish()
    }
}

impl PartialEq for S3 {
    fn eq(&self, other: &S3) -> bool {
        self.url == other.url
    }
}

impl Eq for S3 {}

impl S3 {
    fn parse(url: &str) -> Result<S3, DestError> {
        let rest = url.strip_prefix("s3://").unwrap_or(url);
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(DestError::Refused(format!(
                "backup destination {url:?} names no bucket: write s3://BUCKET[/PREFIX]"
            )));
        }
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| {
                DestError::Refused(format!(
                    "backup destination {url:?}: {e} (the S3 client takes its settings from \
                     AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, and \
                     AWS_ENDPOINT with AWS_ALLOW_HTTP=true for a server other than AWS)"
                ))
            })?;
        Ok(S3 {
            url: url.trim_end_matches('/').to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            store: Arc::new(store),
        })
    }

    fn path(&self, key: &str) -> object_store::path::Path {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else if key.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}/{key}", self.prefix)
        };
        object_store::path::Path::from(full)
    }

    fn io(&self, what: &str, key: &str, e: object_store::Error) -> DestError {
        DestError::Io {
            what: format!("{what} {}/{key}", self.url),
            detail: e.to_string(),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Dir(p) => write!(f, "{}", p.display()),
            Destination::S3(s) => write!(f, "{}", s.url),
        }
    }
}

impl Destination {
    /// A destination from its written form: a directory path (or `file://PATH`), or
    /// `s3://bucket/prefix`. Other schemes are refused by name.
    pub fn parse(s: &str) -> Result<Destination, DestError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(DestError::Refused(
                "the backup destination is empty: give a directory, e.g. /var/backups/warren"
                    .into(),
            ));
        }
        if let Some(path) = s.strip_prefix("file://") {
            return Ok(Destination::Dir(PathBuf::from(path)));
        }
        if s.starts_with("s3://") {
            return Ok(Destination::S3(S3::parse(s)?));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(DestError::Refused(format!(
                "backup destination {s:?}: {scheme}:// destinations are not supported by this \
                 build; give a directory or s3://BUCKET/PREFIX"
            )));
        }
        Ok(Destination::Dir(PathBuf::from(s)))
    }

    /// Refuses a destination inside the cell's own data directory: a backup must survive
    /// the loss of what it backs up ("backups never go to the cell's own store").
    pub fn check_not_inside(&self, data_dir: &Path) -> Result<(), DestError> {
        let Destination::Dir(dest) = self else {
            return Ok(());
        };
        if data_dir.as_os_str().is_empty() {
            return Ok(());
        }
        let (dest_abs, data_abs) = (resolve(dest), resolve(data_dir));
        if dest_abs.starts_with(&data_abs) {
            return Err(DestError::Refused(format!(
                "backup destination {} is inside the cell's own data directory {}: backups \
                 never go to the cell's own store (it is what they must survive); give a \
                 directory on another disk or host",
                dest.display(),
                data_dir.display()
            )));
        }
        Ok(())
    }

    /// Refuses keys that are not plain relative paths (`..`, empty parts).
    fn check_key(key: &str) -> Result<(), DestError> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(DestError::Refused(format!(
                "object key {key:?} is not a plain relative path"
            )));
        }
        Ok(())
    }

    fn path(&self, key: &str) -> Result<PathBuf, DestError> {
        Self::check_key(key)?;
        match self {
            Destination::Dir(root) => Ok(root.join(key)),
            Destination::S3(_) => unreachable!("directory paths are for directories"),
        }
    }

    /// Writes `bytes` as object `key`, whole or not at all.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), DestError> {
        if let Destination::S3(s3) = self {
            Self::check_key(key)?;
            s3.store
                .put(&s3.path(key), bytes.into())
                .await
                .map_err(|e| s3.io("cannot write", key, e))?;
            return Ok(());
        }
        let path = self.path(key)?;
        blocking(move || {
            let io = |what: &str, e: std::io::Error| DestError::Io {
                what: format!("{what} {}", path.display()),
                detail: e.to_string(),
            };
            let dir = path.parent().expect("an object path has a parent");
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
            let tmp = path.with_extension("partial");
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", e))?;
                f.write_all(&bytes).map_err(|e| io("cannot write", e))?;
                f.sync_all().map_err(|e| io("cannot sync", e))?;
            }
            std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename into place", e))?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await
    }

    /// Object `key`'s bytes, `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DestError> {
        if let Destination::S3(s3) = self {
            Self::check_key(key)?;
            let read = async {
                let r = s3.store.get(&s3.path(key)).await?;
                r.bytes().await
            };
            return match read.await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(s3.io("cannot read", key, e)),
            };
        }
        let path = self.path(key)?;
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DestError::Io {
                what: format!("cannot read {}", path.display()),
                detail: e.to_string(),
            }),
        })
        .await
    }

    /// The names directly under `prefix` (a key prefix without its trailing `/`; empty:
    /// the root), sorted; none if it does not exist.
    pub async fn children(&self, prefix: &str) -> Result<Vec<String>, DestError> {
        let root = match self {
            Destination::Dir(root) => root,
            Destination::S3(s3) => {
                if !prefix.is_empty() {
                    Self::check_key(prefix)?;
                }
                let at = s3.path(prefix);
                let listed = s3
                    .store
                    .list_with_delimiter((!at.as_ref().is_empty()).then_some(&at))
                    .await
                    .map_err(|e| s3.io("cannot list", prefix, e))?;
                let mut names: Vec<String> = listed
                    .common_prefixes
                    .iter()
                    .chain(listed.objects.iter().map(|o| &o.location))
                    .filter_map(|p| p.filename().map(str::to_owned))
                    .collect();
                names.sort();
                names.dedup();
                return Ok(names);
            }
        };
        let dir = if prefix.is_empty() {
            root.clone()
        } else {
            self.path(prefix)?
        };
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(DestError::Io {
                        what: format!("cannot list {}", dir.display()),
                        detail: e.to_string(),
                    })
                }
            };
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.ends_with(".partial"))
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    /// Deletes object `key` (absent is fine), and its directory once empty.
    pub async fn delete(&self, key: &str) -> Result<(), DestError> {
        if let Destination::S3(s3) = self {
            Self::check_key(key)?;
            return match s3.store.delete(&s3.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(s3.io("cannot delete", key, e)),
            };
        }
        let path = self.path(key)?;
        blocking(move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(DestError::Io {
                        what: format!("cannot delete {}", path.display()),
                        detail: e.to_string(),
                    })
                }
            }
            if let Some(dir) = path.parent() {
                // Fails (and is meant to) while other objects remain.
                let _ = std::fs::remove_dir(dir);
            }
            Ok(())
        })
        .await
    }
}

/// Why an encoded write failed.
#[derive(Debug)]
pub(crate) enum EncodeError {
    Dest(DestError),
    Format(crate::format::FormatError),
}

/// What [`Destination::put_encoded`] wrote.
pub(crate) struct Encoded {
    pub(crate) counts: crate::format::Counts,
    pub(crate) bytes: u64,
    pub(crate) sha256: String,
}

/// A writer that hashes (SHA-256) and counts what passes through it.
struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        use sha2::Digest;
        Hashing {
            inner,
            sha: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (W, u64, String) {
        use sha2::Digest;
        let hex = self
            .sha
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (self.inner, self.bytes, hex)
    }
}

impl Destination {
    /// Encodes `snap` (the data object's format) as object `key`, hashing it on the way:
    /// into a directory record by record through a buffered file (the encoded object is
    /// never whole in memory), to S3 in one PUT of the encoded object.
    pub(crate) async fn put_encoded(
        &self,
        key: &str,
        snap: Arc<warren_cell::store::Snapshot>,
    ) -> Result<Encoded, EncodeError> {
        if let Destination::S3(_) = self {
            let (data, counts, bytes, sha256) = tokio::task::spawn_blocking(move || {
                let mut w = Hashing::new(Vec::new());
                let counts = crate::format::encode(&snap, &mut w)?;
                let (data, bytes, sha) = w.finish();
                Ok::<_, crate::format::FormatError>((data, counts, bytes, sha))
            })
            .await
            .map_err(|e| {
                EncodeError::Dest(DestError::Io {
                    what: "the backup's encoding task failed".into(),
                    detail: e.to_string(),
                })
            })?
            .map_err(EncodeError::Format)?;
            self.put(key, data).await.map_err(EncodeError::Dest)?;
            return Ok(Encoded {
                counts,
                bytes,
                sha256,
            });
        }
        let path = self.path(key).map_err(EncodeError::Dest)?;
        tokio::task::spawn_blocking(move || {
            let io = |what: &str, e: std::io::Error| {
                EncodeError::Dest(DestError::Io {
                    what: format!("{what} {}", path.display()),
                    detail: e.to_string(),
                })
            };
            let dir = path.parent().expect("an object path has a parent");
            std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory of", e))?;
            let tmp = path.with_extension("partial");
            let file = std::fs::File::create(&tmp).map_err(|e| io("cannot create", e))?;
            let mut w = Hashing::new(std::io::BufWriter::with_capacity(1 << 20, file));
            let counts = crate::format::encode(&snap, &mut w).map_err(|e| match e {
                crate::format::FormatError::Io(e) => io("cannot write", e),
                other => EncodeError::Format(other),
            })?;
            let (buffered, bytes, sha256) = w.finish();
            let file = buffered
                .into_inner()
                .map_err(|e| io("cannot write", e.into_error()))?;
            file.sync_all().map_err(|e| io("cannot sync", e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("cannot rename into place", e))?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(Encoded {
                counts,
                bytes,
                sha256,
            })
        })
        .await
        .map_err(|e| {
            EncodeError::Dest(DestError::Io {
                what: "the backup's writing task failed".into(),
                detail: e.to_string(),
            })
        })?
    }
}

/// `p` made absolute, with its longest existing ancestor resolved (symlinks, `..`).
fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut existing = abs.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        out.push(name);
    }
    out
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DestError> + Send + 'static,
) -> Result<T, DestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DestError::Io {
            what: "the destination's I/O task failed".into(),
            detail: e.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_directories_and_refuses_other_schemes_by_name() {
        assert_eq!(
            Destination::parse("/b").unwrap(),
            Destination::Dir("/b".into())
        );
        assert_eq!(
            Destination::parse("file:///b").unwrap(),
            Destination::Dir("/b".into())
        );
        let e = Destination::parse("s3:///x").unwrap_err().to_string();
        assert!(e.contains("names no bucket"), "{e}");
        let e = Destination::parse("gs://x/y").unwrap_err().to_string();
        assert!(e.contains("gs:// destinations are not supported"), "{e}");
        assert!(Destination::parse(" ").is_err());
    }

    #[test]
    fn refuses_a_destination_inside_the_data_directory() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let inside = Destination::Dir(data.join("backups/x"));
        let e = inside.check_not_inside(&data).unwrap_err().to_string();
        assert!(e.contains("never go to the cell's own store"), "{e}");
        // Through `..` too.
        let sneaky = Destination::Dir(t.path().join("other/../data/b"));
        std::fs::create_dir_all(t.path().join("other")).unwrap();
        assert!(sneaky.check_not_inside(&data).is_err());
        let beside = Destination::Dir(t.path().join("backups"));
        beside.check_not_inside(&data).unwrap();
        // A sibling whose name merely starts with the data directory's is fine.
        Destination::Dir(t.path().join("data2"))
            .check_not_inside(&data)
            .unwrap();
    }

    #[tokio::test]
    async fn put_get_list_delete() {
        let t = tempfile::tempdir().unwrap();
        let d = Destination::Dir(t.path().to_path_buf());
        d.put("a/b/data", b"xyz".to_vec()).await.unwrap();
        d.put("a/c/data", b"1".to_vec()).await.unwrap();
        assert_eq!(d.get("a/b/data").await.unwrap().unwrap(), b"xyz");
        assert_eq!(d.get("a/b/none").await.unwrap(), None);
        assert_eq!(d.children("a").await.unwrap(), ["b", "c"]);
        assert!(d.children("zz").await.unwrap().is_empty());
        d.delete("a/b/data").await.unwrap();
        assert_eq!(d.children("a").await.unwrap(), ["c"]);
        assert!(d.put("../x", vec![]).await.is_err());
        assert!(d.get("a//b").await.is_err());
    }
}
