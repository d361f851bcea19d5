//! The node commands of `warren ctl`: `mkdir`, `put`, `cat` (and `cat --prefix`), `stat`,
//! `ls` (and `ls -r`) and `rm` (and `rm -r`, with its confirmation), each one open / call /
//! close on the session per node.

use serde_json::{json, Value};
use std::io::IsTerminal;
use warren_client::{DirEntry, NodeKind, OpenOptions, Session, Stat};

use super::failure::Failure;
use super::output::{self, table, Output, Record};

/// The most nodes a recursive command visits: a bound on a walk over a huge subtree (and
/// on what `rm -r` may delete in one go).
const MAX_WALK: usize = 100_000;

/// Contents in JSON: a string when they are UTF-8, else their bytes as hex.
fn contents_json(bytes: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(bytes) {
        Ok(text) => ("contents", Value::String(text.to_string())),
        Err(_) => (
            "contents_hex",
            Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        ),
    }
}

/// `mkdir`: creates a directory; fails if the node exists.
pub(crate) async fn mkdir(
    session: &Session,
    path: &str,
    ephemeral: bool,
    out: Output,
) -> Result<(), Failure> {
    let mut opts = OpenOptions::new().write().create_dir().exclusive();
    if ephemeral {
        opts = opts.ephemeral();
    }
    let (handle, _) = session.open(path, opts).await?;
    let full = handle.path().to_string();
    handle.close().await;
    out.quiet(
        &Record::default()
            .field("path", full)
            .field("created", true)
            .field("kind", "directory"),
    )
}

/// `put`: create-or-overwrite, or compare-and-swap with `if_generation`.
pub(crate) async fn put(
    session: &Session,
    path: &str,
    data: Vec<u8>,
    if_generation: Option<u64>,
    ephemeral: bool,
    out: Output,
) -> Result<(), Failure> {
    let written = |full: String, created: bool, stat: &Stat| {
        Record::default()
            .field("path", full)
            .field("created", created)
            .field("content_generation", stat.content_generation)
            .field("length", stat.length)
            .field("checksum", output::checksum_text(stat.checksum))
    };
    if let Some(generation) = if_generation {
        let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
        let full = handle.path().to_string();
        let result = handle.set_contents_if(data, generation).await;
        handle.close().await;
        return out.quiet(&written(full, false, &result?));
    }
    let mut opts = OpenOptions::new().write().create_file(data.clone());
    if ephemeral {
        opts = opts.ephemeral();
    }
    let (handle, info) = session.open(path, opts).await?;
    let full = handle.path().to_string();
    let result = if info.created {
        Ok(info.stat.clone())
    } else {
        handle.set_contents(data).await
    };
    handle.close().await;
    out.quiet(&written(full, info.created, &result?))
}

/// `cat`: the file's contents, nothing added. A directory has none to print: that is an
/// error pointing at `ls`, not an empty success.
pub(crate) async fn cat(session: &Session, path: &str, out: Output) -> Result<(), Failure> {
    let opts = OpenOptions::new().read().read_contents();
    let (handle, info) = session.open(path, opts).await?;
    let full = handle.path().to_string();
    handle.close().await;
    if info.stat.kind == NodeKind::Directory {
        return Err(Failure::invalid(format!(
            "{full} is a directory, which has no contents to print; list it with \
             `warren ctl ls {path}`"
        )));
    }
    let contents = info.contents.unwrap_or_default();
    if !out.json && !out.table {
        return output::write_raw(&contents);
    }
    let (key, value) = contents_json(&contents);
    let record = Record::default()
        .field("path", full)
        .field("length", contents.len())
        .json_only(key, value)
        .text_only("contents", String::from_utf8_lossy(&contents).into_owned());
    output::print_line(&out.record(&record))
}

/// `cat --prefix DIR`: every file under DIR (at any depth) with its contents, by path.
pub(crate) async fn cat_prefix(session: &Session, path: &str, out: Output) -> Result<(), Failure> {
    let (root, nodes) = walk(session, path).await?;
    let mut files = Vec::new();
    for (rel, stat) in nodes {
        if stat.kind != NodeKind::File {
            continue;
        }
        let full = format!("{root}/{rel}");
        let opts = OpenOptions::new().read().read_contents();
        let (handle, info) = session.open(&full, opts).await?;
        handle.close().await;
        files.push((full, info.contents.unwrap_or_default()));
    }
    if out.json {
        let items: Vec<Value> = files
            .iter()
            .map(|(p, c)| {
                let (key, value) = contents_json(c);
                json!({"path": p, key: value})
            })
            .collect();
        return output::print_line(&Value::Array(items).to_string());
    }
    if out.table {
        let rows: Vec<Vec<String>> = files
            .iter()
            .map(|(p, c)| {
                let text = String::from_utf8_lossy(c).escape_debug().to_string();
                vec![p.clone(), c.len().to_string(), text]
            })
            .collect();
        return output::print_line(&table(&["path", "length", "contents"], &rows));
    }
    // etcdctl's `get --prefix`: the path on one line, the contents (and a newline) after.
    for (p, c) in &files {
        output::print_line(p)?;
        output::write_raw(c)?;
        output::print_line("")?;
    }
    Ok(())
}

/// Every node under the directory at `path`, depth first in name order, by its path
/// under that directory (`a`, `a/b`, …); with the directory's full path.
async fn walk(session: &Session, path: &str) -> Result<(String, Vec<(String, Stat)>), Failure> {
    let (handle, info) = session.open(path, OpenOptions::new().read()).await?;
    let root = handle.path().to_string();
    handle.close().await;
    if info.stat.kind != NodeKind::Directory {
        return Err(Failure::invalid(format!(
            "{root} is a file; a recursive command takes a directory"
        )));
    }
    let mut found = Vec::new();
    // Directories still to list, by their path under the root ("" is the root itself).
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let full = if rel.is_empty() {
            root.clone()
        } else {
            format!("{root}/{rel}")
        };
        let (handle, _) = session.open(&full, OpenOptions::new().read()).await?;
        let entries = handle.read_dir().await;
        handle.close().await;
        let mut entries = entries?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let at = found.len();
        for e in entries {
            let child = if rel.is_empty() {
                e.name
            } else {
                format!("{rel}/{}", e.name)
            };
            found.push((child, e.stat));
        }
        if found.len() > MAX_WALK {
            return Err(Failure::invalid(format!(
                "{root} holds more than {MAX_WALK} nodes; work on a smaller directory"
            )));
        }
        // Depth first: the subdirectories just found, first name on top of the stack.
        let subdirs: Vec<String> = found[at..]
            .iter()
            .filter(|(_, st)| st.kind == NodeKind::Directory)
            .map(|(p, _)| p.clone())
            .collect();
        pending.extend(subdirs.into_iter().rev());
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((root, found))
}

/// `stat`: the node's metadata.
pub(crate) async fn stat(session: &Session, path: &str, out: Output) -> Result<(), Failure> {
    let (handle, info) = session.open(path, OpenOptions::new()).await?;
    let full = handle.path().to_string();
    handle.close().await;
    output::print_line(&output::stat_text(&full, &info.stat, out))
}

/// `ls`: the directory's children, sorted by name; with `recursive`, every node under it
/// by its path under the directory (`sub/x`).
pub(crate) async fn ls(
    session: &Session,
    path: &str,
    recursive: bool,
    out: Output,
) -> Result<(), Failure> {
    let entries = if recursive {
        walk(session, path)
            .await?
            .1
            .into_iter()
            .map(|(name, stat)| DirEntry { name, stat })
            .collect()
    } else {
        let (handle, _) = session.open(path, OpenOptions::new().read()).await?;
        let entries = handle.read_dir().await;
        handle.close().await;
        let mut entries = entries?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        entries
    };
    if out.json || out.table || !entries.is_empty() {
        output::print_line(&output::ls_text(&entries, out))?;
    }
    Ok(())
}

/// Deletes one node.
async fn delete(session: &Session, path: &str) -> Result<String, Failure> {
    let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
    let full = handle.path().to_string();
    let deleted = handle.delete().await;
    handle.close().await;
    deleted?;
    Ok(full)
}

/// `rm`: deletes the node (a directory only when empty); with `recursive`, the directory
/// and everything under it, deepest first, after a confirmation on the terminal unless
/// `yes` (without a terminal, only with `yes`).
pub(crate) async fn rm(
    session: &Session,
    path: &str,
    recursive: bool,
    yes: bool,
    out: Output,
) -> Result<(), Failure> {
    if !recursive {
        let full = delete(session, path).await?;
        return out.quiet(&Record::default().field("path", full).field("deleted", 1));
    }
    let (root, nodes) = walk(session, path).await?;
    if !yes {
        confirm(&format!(
            "delete {root} and the {} nodes under it? [y/N] ",
            nodes.len()
        ))?;
    }
    // Deepest first: a directory's children go before it.
    let mut paths: Vec<String> = nodes.into_iter().map(|(rel, _)| rel).collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for rel in &paths {
        delete(session, &format!("{root}/{rel}")).await?;
    }
    delete(session, &root).await?;
    out.quiet(
        &Record::default()
            .field("path", root)
            .field("deleted", paths.len() + 1),
    )
}

/// Asks `question` on the terminal; an error unless the answer is yes. Without a
/// terminal on stdin, refuses: a script must say `--yes`.
fn confirm(question: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::invalid(
            "rm -r deletes a whole subtree and stdin is not a terminal to confirm it on; \
             add --yes (-y) to delete without asking",
        ));
    }
    eprint!("{question}");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure::io("cannot read the answer", e))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Failure {
            code: "CANCELLED",
            message: "nothing deleted".into(),
        })
    }
}

/// The VALUE of `put -`, read before connecting so a slow pipe cannot eat into the
/// session's lease.
pub(crate) async fn read_stdin() -> Result<Vec<u8>, Failure> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Failure::invalid(format!("cannot read VALUE from stdin: {e}")))?;
    Ok(buf)
}
