//! The node commands of `warren ctl`: `mkdir`, `put`, `cat`, `stat`, `ls` and `rm`, each one
//! open / call / close on the session.

use warren_client::{NodeKind, OpenOptions, Session};

use super::failure::Failure;
use super::output::{self, Output};

/// `mkdir`: creates a directory; fails if the node exists.
pub(crate) async fn mkdir(session: &Session, path: &str, ephemeral: bool) -> Result<(), Failure> {
    let mut opts = OpenOptions::new().write().create_dir().exclusive();
    if ephemeral {
        opts = opts.ephemeral();
    }
    let (handle, _) = session.open(path, opts).await?;
    handle.close().await;
    Ok(())
}

/// `put`: create-or-overwrite, or compare-and-swap with `if_generation`.
pub(crate) async fn put(
    session: &Session,
    path: &str,
    data: Vec<u8>,
    if_generation: Option<u64>,
    ephemeral: bool,
) -> Result<(), Failure> {
    if let Some(generation) = if_generation {
        let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
        let written = handle.set_contents_if(data, generation).await;
        handle.close().await;
        written?;
        return Ok(());
    }
    let mut opts = OpenOptions::new().write().create_file(data.clone());
    if ephemeral {
        opts = opts.ephemeral();
    }
    let (handle, info) = session.open(path, opts).await?;
    let written = if info.created {
        Ok(())
    } else {
        handle.set_contents(data).await.map(|_| ())
    };
    handle.close().await;
    Ok(written?)
}

/// `cat`: the file's contents, nothing added. A directory has none to print: that is an
/// error pointing at `ls`, not an empty success.
pub(crate) async fn cat(session: &Session, path: &str) -> Result<(), Failure> {
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
    output::write_raw(&info.contents.unwrap_or_default())
}

/// `stat`: the node's metadata.
pub(crate) async fn stat(session: &Session, path: &str, out: Output) -> Result<(), Failure> {
    let (handle, info) = session.open(path, OpenOptions::new()).await?;
    let full = handle.path().to_string();
    handle.close().await;
    output::print_line(&output::stat_text(&full, &info.stat, out.json))
}

/// `ls`: the directory's children, sorted by name.
pub(crate) async fn ls(session: &Session, path: &str, out: Output) -> Result<(), Failure> {
    let (handle, _) = session.open(path, OpenOptions::new().read()).await?;
    let entries = handle.read_dir().await;
    handle.close().await;
    let mut entries = entries?;
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if out.json || !entries.is_empty() {
        output::print_line(&output::ls_text(&entries, out.json))?;
    }
    Ok(())
}

/// `rm`: deletes the node (a directory only when empty).
pub(crate) async fn rm(session: &Session, path: &str) -> Result<(), Failure> {
    let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
    let deleted = handle.delete().await;
    handle.close().await;
    Ok(deleted?)
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
