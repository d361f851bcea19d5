//! The thin async driver around [`crate::plan`] (docs/mirror.md, "Lag" and "Catch-up"): two
//! client sessions (source and target), a watch handle with child events on every directory
//! of the subtree on both sides, a queue of changed paths fed by those events, and a loop
//! that reads the two views of each changed path (or of the whole subtree, in a full sweep),
//! asks the plan what to do and does it. Every failure is counted, logged and retried with
//! backoff, forever; a lost session is connected again and followed by a full sweep.

use crate::plan::{self, Action, Entry, TargetWritePolicy, View};
use crate::status::{Shared, Side};
use crate::subtree::{loop_message, Subtree};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren_client::{
    ClientOptions, ErrorCode, Event, EventMask, EventStream, Handle, NodeKind, OpenOptions,
    Session, Stat,
};

/// At most this many queued paths per round, and file writes at once.
const BATCH: usize = 64;

/// One node as [`Deployment::read_nodes`] read it.
struct Node {
    entry: Entry,
    /// A source file's contents, read with it (so its copy needs no second read).
    contents: Option<Vec<u8>>,
}

/// Source files' contents read with the view, by relative path.
type Contents = std::collections::HashMap<String, Vec<u8>>;

/// The first retry waits this long; each failure in a row doubles it, up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The source deployment's session options.
    pub from: ClientOptions,
    /// The target deployment's.
    pub to: ClientOptions,
    pub subtree: Subtree,
    pub to_subtree: Subtree,
    pub policy: TargetWritePolicy,
    /// How often to walk and compare both trees even when events say nothing changed.
    pub sweep_interval: Duration,
}

/// Why the agent stopped: only something retrying cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The settings cannot work (a subtree in another deployment, a loop).
    #[error("{0}")]
    Config(String),
}

/// Doubling backoff between retries.
struct Backoff(u32);

impl Backoff {
    fn delay(&self) -> Duration {
        MIN_BACKOFF
            .saturating_mul(1 << self.0.min(10))
            .min(MAX_BACKOFF)
    }

    async fn wait(&mut self) {
        let d = self.delay();
        self.0 = self.0.saturating_add(1);
        tokio::time::sleep(d).await;
    }
}

/// One deployment: its session, the subtree root there, and the watch handles.
struct Deployment {
    session: Session,
    /// Full path of the subtree root.
    root: String,
    /// Relative path → a read handle on that directory subscribed to child events.
    watches: HashMap<String, Handle>,
    side: Side,
    /// Paths the last reads could not read (an ACL refuses the agent), with why: they and
    /// everything below are left out of the plan on both sides until readable.
    unreadable: Vec<(String, String)>,
}

fn join(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{rel}")
    }
}

fn join_rel(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

/// `full` relative to `root`, if it is `root` or below it.
fn relative(root: &str, full: &str) -> Option<String> {
    if full == root {
        return Some(String::new());
    }
    full.strip_prefix(root)?
        .strip_prefix('/')
        .map(str::to_string)
}

fn entry_of(stat: &Stat) -> Entry {
    match stat.kind {
        NodeKind::Directory => Entry::dir(stat.acl.clone()),
        NodeKind::File => Entry::file(stat.checksum, stat.acl.clone()),
    }
}

fn watch_options() -> OpenOptions {
    OpenOptions::new().read().events(EventMask::CHILD_CHANGED)
}

fn not_found(e: &warren_client::Error) -> bool {
    e.code() == Some(ErrorCode::NotFound)
}

/// An error that concerns one path (an ACL that refuses the agent, a node in the way), not
/// the session or the network: the agent skips that path, reports it and goes on with the
/// others instead of retrying everything.
fn path_level(e: &warren_client::Error) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::PermissionDenied
                | ErrorCode::InvalidArgument
                | ErrorCode::TooLarge
                | ErrorCode::AlreadyExists
                | ErrorCode::NotEmpty
                | ErrorCode::NotFound
        )
    )
}

/// What failed while syncing: a call, or the source subtree itself.
type Result<T> = std::result::Result<T, String>;

fn call_err(what: &str, path: &str, e: warren_client::Error) -> String {
    format!("{what} {path}: {e}")
}

/// A failed action: why, and whether it concerns only its path ([`path_level`]).
struct ActionError {
    message: String,
    path_level: bool,
}

fn act_err(what: &str, path: &str, e: warren_client::Error) -> ActionError {
    ActionError {
        path_level: path_level(&e),
        message: call_err(what, path, e),
    }
}

/// A path-level failure that is not a call's (a node of the wrong kind in the way).
fn in_the_way(message: String) -> ActionError {
    ActionError {
        message,
        path_level: true,
    }
}

impl From<String> for ActionError {
    fn from(message: String) -> ActionError {
        ActionError {
            message,
            path_level: false,
        }
    }
}

/// Paths that could not be read or written this round, with why.
type PathFailures = Vec<(String, String)>;

/// Takes out of both views every path at or below one of `bad`: the plan leaves them alone.
fn strip(source: &mut View, target: &mut View, bad: &PathFailures) {
    if bad.is_empty() {
        return;
    }
    let hit = |k: &String| bad.iter().any(|(b, _)| plan::is_under(k, b));
    source.retain(|k, _| !hit(k));
    target.retain(|k, _| !hit(k));
}

/// What one round of [`Agent::apply_pending`] did.
enum Round {
    /// Nothing was queued.
    Idle,
    /// Changes were applied.
    Applied,
    /// Some paths could not be read or written (reported); the rest were applied.
    SomeFailed,
}

impl Deployment {
    fn name(&self) -> &'static str {
        match self.side {
            Side::Source => "source",
            Side::Target => "target",
        }
    }

    /// The paths the reads since the last call could not read.
    fn take_unreadable(&mut self) -> PathFailures {
        std::mem::take(&mut self.unreadable)
    }

    /// Closes and forgets the watches on `rel` and below.
    fn unwatch(&mut self, rel: &str) {
        let gone: Vec<String> = self
            .watches
            .keys()
            .filter(|k| plan::is_under(k, rel))
            .cloned()
            .collect();
        for k in gone {
            if let Some(h) = self.watches.remove(&k) {
                tokio::spawn(h.close());
            }
        }
    }

    /// Opens a watch on directory `rel` unless there is one.
    async fn watch(&mut self, rel: &str) -> Result<()> {
        let full = join(&self.root, rel);
        self.try_watch(rel)
            .await
            .map_err(|e| call_err("open", &full, e))
    }

    /// [`watch`](Self::watch), with the client's error.
    async fn try_watch(&mut self, rel: &str) -> std::result::Result<(), warren_client::Error> {
        if self.watches.contains_key(rel) {
            return Ok(());
        }
        let full = join(&self.root, rel);
        let (h, info) = self.session.open(&full, watch_options()).await?;
        if info.stat.kind == NodeKind::Directory {
            self.watches.insert(rel.to_string(), h);
        } else {
            tokio::spawn(h.close());
        }
        Ok(())
    }

    /// Each of these nodes (relative paths), read at once: its entry and, with
    /// `contents`, a file's contents. Missing nodes are left out. A directory keeps (or
    /// gets) its watch.
    async fn read_nodes(
        &mut self,
        rels: &[String],
        contents: bool,
    ) -> Result<std::collections::BTreeMap<String, Node>> {
        let (session, root) = (&self.session, &self.root);
        let results = futures::future::join_all(rels.iter().map(|rel| async move {
            let full = join(root, rel);
            let options = if contents {
                watch_options().read_contents()
            } else {
                watch_options()
            };
            let mut opened = session.open(&full, options).await;
            if contents && matches!(&opened, Err(e) if e.code() == Some(ErrorCode::InvalidArgument))
            {
                // A directory has no contents to read at open: open it plainly.
                opened = session.open(&full, watch_options()).await;
            }
            match opened {
                Ok(x) => Ok(Some(x)),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(e),
            }
        }))
        .await;
        let mut out = std::collections::BTreeMap::new();
        let mut failed = None;
        for (rel, r) in rels.iter().zip(results) {
            match r {
                Err(e) if path_level(&e) => self
                    .unreadable
                    .push((rel.clone(), call_err("open", &join(&self.root, rel), e))),
                Err(e) => failed = Some(call_err("open", &join(&self.root, rel), e)),
                Ok(None) => self.unwatch(rel),
                Ok(Some((h, info))) if info.stat.ephemeral => {
                    // Not mirrored, and not touched in the target: as if absent.
                    self.unwatch(rel);
                    tokio::spawn(h.close());
                }
                Ok(Some((h, info))) => {
                    if info.stat.kind == NodeKind::Directory && !self.watches.contains_key(rel) {
                        self.watches.insert(rel.clone(), h);
                    } else {
                        if info.stat.kind == NodeKind::File {
                            self.unwatch(rel);
                        }
                        tokio::spawn(h.close());
                    }
                    let contents = (info.stat.kind == NodeKind::File)
                        .then_some(info.contents)
                        .flatten();
                    out.insert(
                        rel.clone(),
                        Node {
                            entry: entry_of(&info.stat),
                            contents,
                        },
                    );
                }
            }
        }
        failed.map_or(Ok(out), Err)
    }

    /// The view of `rel` (and, with `deep`, everything below it) on this side, opening a
    /// watch on every directory met before listing it, so no later change goes unseen.
    async fn read_region(&mut self, rel: &str, deep: bool) -> Result<View> {
        let mut view = View::new();
        let full = join(&self.root, rel);
        let (h, info) = match self.session.open(&full, watch_options()).await {
            Ok(x) => x,
            Err(e) if not_found(&e) => {
                self.unwatch(rel);
                return Ok(view);
            }
            Err(e) if path_level(&e) => {
                self.unreadable
                    .push((rel.to_string(), call_err("open", &full, e)));
                return Ok(view);
            }
            Err(e) => return Err(call_err("open", &full, e)),
        };
        if info.stat.ephemeral {
            self.unwatch(rel);
            tokio::spawn(h.close());
            return Ok(view);
        }
        view.insert(rel.to_string(), entry_of(&info.stat));
        if info.stat.kind != NodeKind::Directory {
            self.unwatch(rel);
            tokio::spawn(h.close());
            return Ok(view);
        }
        match self.watches.get(rel) {
            Some(_) => {
                tokio::spawn(h.close());
            }
            None => {
                self.watches.insert(rel.to_string(), h);
            }
        }
        if !deep {
            return Ok(view);
        }
        let mut stack = vec![rel.to_string()];
        while let Some(dir) = stack.pop() {
            let listing = {
                let Some(h) = self.watches.get(&dir) else {
                    continue;
                };
                match h.read_dir().await {
                    Ok(l) => l,
                    // Deleted since it was opened: its parent's event will say so.
                    Err(e) if not_found(&e) || e.code() == Some(ErrorCode::HandleInvalid) => {
                        self.unwatch(&dir);
                        view.retain(|k, _| !plan::is_under(k, &dir) || k == &dir);
                        continue;
                    }
                    Err(e) if path_level(&e) => {
                        self.unreadable
                            .push((dir.clone(), call_err("list", &join(&self.root, &dir), e)));
                        continue;
                    }
                    Err(e) => return Err(call_err("list", &join(&self.root, &dir), e)),
                }
            };
            // Watches below `dir` whose directory is gone.
            let names: Vec<&str> = listing.iter().map(|e| e.name.as_str()).collect();
            let stale: Vec<String> = self
                .watches
                .keys()
                .filter(|k| {
                    k.as_str() != dir
                        && relative_parent(k) == dir
                        && !names.contains(&k.rsplit('/').next().unwrap_or_default())
                })
                .cloned()
                .collect();
            for k in stale {
                self.unwatch(&k);
            }
            for entry in listing {
                let child = join_rel(&dir, &entry.name);
                if entry.stat.ephemeral {
                    // Not mirrored, and not touched in the target (docs/mirror.md).
                    continue;
                }
                view.insert(child.clone(), entry_of(&entry.stat));
                if entry.stat.kind == NodeKind::Directory {
                    match self.try_watch(&child).await {
                        Ok(()) => stack.push(child),
                        Err(e) if not_found(&e) => {
                            // Deleted between the listing and the open: its event follows.
                            tracing::debug!(side = self.name(), %e, "directory vanished");
                            view.remove(&child);
                        }
                        Err(e) if path_level(&e) => {
                            let full = join(&self.root, &child);
                            self.unreadable.push((child, call_err("open", &full, e)));
                        }
                        Err(e) => return Err(call_err("open", &join(&self.root, &child), e)),
                    }
                } else if self.watches.contains_key(&child) {
                    self.unwatch(&child);
                }
            }
        }
        Ok(view)
    }
}

/// The parent of a relative path (`""` for a top-level name).
fn relative_parent(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Runs the agent until `shutdown` turns true (then it closes both sessions, so the
/// deployments drop what they recorded of it at once: a dead session's cached copies hold
/// writes to those paths for up to a lease, docs/design.md §7) or a fatal error.
pub async fn run(
    config: Config,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::result::Result<(), Fatal> {
    let mut backoff = Backoff(0);
    // What both sides last agreed on outlives the sessions: a reconnect (after an outage)
    // still tells target writes from source changes.
    let mut known: Option<View> = None;
    loop {
        let src = tokio::select! {
            s = connect(&config.from, "source", &shared, &mut backoff) => s,
            _ = stopping(&mut shutdown) => return Ok(()),
        };
        shared.lock().connected_source = true;
        let dst = tokio::select! {
            s = connect(&config.to, "target", &shared, &mut backoff) => s,
            _ = stopping(&mut shutdown) => {
                close(&[src]).await;
                return Ok(());
            }
        };
        shared.lock().connected_target = true;
        let src_root = config
            .subtree
            .full_in("--subtree", src.deployment())
            .map_err(Fatal::Config)?;
        let dst_root = config
            .to_subtree
            .full_in("--to-subtree", dst.deployment())
            .map_err(Fatal::Config)?;
        if src.deployment() == dst.deployment()
            && (plan::is_under(&src_root, &dst_root) || plan::is_under(&dst_root, &src_root))
        {
            if let (Ok(a), Ok(b)) = (src.locate().await, dst.locate().await) {
                if a.master == b.master && a.cell == b.cell {
                    return Err(Fatal::Config(loop_message(&format!(
                        "both sides reach deployment {} at master {}",
                        a.deployment, a.master
                    ))));
                }
            }
        }
        tracing::info!(source = %src_root, target = %dst_root, "mirror: connected");
        let dead = Arc::new(tokio::sync::Notify::new());
        let pumps = [
            tokio::spawn(pump(
                src.events(),
                src_root.clone(),
                Side::Source,
                shared.clone(),
                dead.clone(),
            )),
            tokio::spawn(pump(
                dst.events(),
                dst_root.clone(),
                Side::Target,
                shared.clone(),
                dead.clone(),
            )),
        ];
        shared.resync();
        let mut agent = Agent {
            src: Deployment {
                session: src.clone(),
                root: src_root,
                watches: HashMap::new(),
                side: Side::Source,
                unreadable: Vec::new(),
            },
            dst: Deployment {
                session: dst.clone(),
                root: dst_root,
                watches: HashMap::new(),
                side: Side::Target,
                unreadable: Vec::new(),
            },
            known: known.take(),
            policy: config.policy,
            shared: shared.clone(),
            sweep_interval: config.sweep_interval,
        };
        let why = tokio::select! {
            why = agent.run(&dead) => why,
            _ = stopping(&mut shutdown) => {
                for p in pumps {
                    p.abort();
                }
                close(&[src, dst]).await;
                return Ok(());
            }
        };
        known = agent.known.take();
        shared.failed("connect", format!("{why}; connecting again"));
        for p in pumps {
            p.abort();
        }
        {
            let mut inner = shared.lock();
            inner.connected_source = false;
            inner.connected_target = false;
        }
        close(&[src, dst]).await;
        backoff.wait().await;
    }
}

/// Returns once `shutdown` is true (or its sender is gone).
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Closes sessions, best effort (a dead session has nothing to close), 2 s at most.
async fn close(sessions: &[Session]) {
    for s in sessions {
        let _ = tokio::time::timeout(Duration::from_secs(2), s.close()).await;
    }
}

/// Connects to one side, retrying with backoff for as long as it takes.
async fn connect(
    options: &ClientOptions,
    what: &'static str,
    shared: &Shared,
    backoff: &mut Backoff,
) -> Session {
    loop {
        match Session::connect_with(options.clone()).await {
            Ok(s) => {
                backoff.0 = 0;
                return s;
            }
            Err(e) => {
                shared.failed(
                    "connect",
                    format!(
                        "cannot reach the {what} ({}): {e}",
                        options.endpoints.join(",")
                    ),
                );
                backoff.wait().await;
            }
        }
    }
}

/// Turns one side's events into queued paths and sweep requests.
async fn pump(
    mut events: EventStream,
    root: String,
    side: Side,
    shared: Arc<Shared>,
    dead: Arc<tokio::sync::Notify>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::ChildChanged {
                path,
                child,
                change,
            } => {
                if let Some(rel) = relative(&root, &format!("{path}/{child}")) {
                    let deep = change != warren_client::ChildChange::Modified;
                    shared.mark(side, rel, deep);
                }
            }
            Event::ContentsModified { path } => {
                if let Some(rel) = relative(&root, &path) {
                    shared.mark(side, rel, false);
                }
            }
            Event::HandleInvalid { path } => {
                if let Some(rel) = relative(&root, &path) {
                    shared.mark(side, rel, true);
                }
            }
            // Events may have been lost: compare everything.
            Event::MasterFailover | Event::Safe => shared.resync(),
            Event::Expired => break,
            Event::Jeopardy | Event::LockAcquired { .. } | Event::ConflictingLock { .. } => {}
        }
    }
    dead.notify_one();
}

struct Agent {
    src: Deployment,
    dst: Deployment,
    /// The source's view as the agent last saw the target agree with it; `None` until the
    /// first full sweep (a restarted process has none), when a difference cannot be told
    /// apart from a source change.
    known: Option<View>,
    policy: TargetWritePolicy,
    shared: Arc<Shared>,
    sweep_interval: Duration,
}

impl Agent {
    /// Works until a session is lost; returns why.
    async fn run(&mut self, dead: &tokio::sync::Notify) -> String {
        let mut backoff = Backoff(0);
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            if let Some(why) = self.lost() {
                return why;
            }
            let due = tokio::time::Instant::now() >= next_sweep;
            let resync = std::mem::take(&mut self.shared.lock().resync);
            if resync || due {
                match self.sweep().await {
                    Ok(()) => {
                        backoff.0 = 0;
                        next_sweep = tokio::time::Instant::now() + self.sweep_interval;
                    }
                    Err(e) => {
                        metrics::counter!("warren_mirror_sweeps_total", "result" => "error")
                            .increment(1);
                        self.shared.failed("sweep", e);
                        self.shared.lock().resync = true;
                        if let Some(why) = self.lost() {
                            return why;
                        }
                        backoff.wait().await;
                        continue;
                    }
                }
            }
            match self.apply_pending().await {
                Ok(Round::Applied) => {
                    backoff.0 = 0;
                    continue;
                }
                Ok(Round::SomeFailed) => {
                    // Reported already; the failed paths stay queued, each retried after
                    // its own backoff (their lag grows meanwhile), the others go on.
                    backoff.0 = 0;
                    continue;
                }
                Ok(Round::Idle) => {}
                Err(e) => {
                    self.shared.failed("apply", e);
                    // Whatever the failure hid, the next sweep finds.
                    self.shared.lock().resync = true;
                    if let Some(why) = self.lost() {
                        return why;
                    }
                    backoff.wait().await;
                    continue;
                }
            }
            let wake_at = match self.shared.next_retry() {
                Some(retry) => next_sweep.min(tokio::time::Instant::from_std(retry)),
                None => next_sweep,
            };
            tokio::select! {
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = dead.notified() => {}
            }
        }
    }

    /// Why the agent must connect again, if it must.
    fn lost(&self) -> Option<String> {
        for side in [&self.src, &self.dst] {
            if !side.session.is_live() {
                return Some(format!(
                    "the {} session ended ({})",
                    side.name(),
                    side.session.state()
                ));
            }
        }
        None
    }

    /// Walks both trees, compares, converges. Paths that cannot be read or written are
    /// reported and left alone; the rest converge.
    async fn sweep(&mut self) -> Result<()> {
        let started_generation = self.shared.lock().generation;
        let mut source = self.src.read_region("", true).await?;
        let mut bad = self.src.take_unreadable();
        match source.get("").map(|e| e.kind) {
            Some(NodeKind::Directory) => {}
            Some(NodeKind::File) => {
                return Err(format!(
                    "the source subtree {} is a file: mirror a directory",
                    self.src.root
                ))
            }
            None => {
                if let Some((_, why)) = bad.iter().find(|(p, _)| p.is_empty()) {
                    return Err(format!("the source subtree cannot be read: {why}"));
                }
                return Err(format!(
                    "the source subtree {} does not exist (nothing in the target is touched until it does): create it, or fix --subtree",
                    self.src.root
                ));
            }
        }
        self.ensure_target_parents().await?;
        let mut target = self.dst.read_region("", true).await?;
        bad.extend(self.dst.take_unreadable());
        if bad.iter().any(|(p, _)| p.is_empty()) {
            let why = &bad
                .iter()
                .find(|(p, _)| p.is_empty())
                .expect("just found")
                .1;
            return Err(format!("the target subtree cannot be read: {why}"));
        }
        strip(&mut source, &mut target, &bad);
        let p = plan::plan(&source, &target, self.known.as_ref(), self.policy);
        let found = p.divergences.len() as u64;
        if found > 0 {
            tracing::info!(
                divergences = found,
                actions = p.actions.len(),
                "mirror: the sweep found the target behind"
            );
            metrics::counter!("warren_mirror_divergences_total").increment(found);
            self.shared.lock().divergences += found;
        }
        self.note_target_writes(&p, &[(String::new(), true)]);
        let failed = self.execute(&p, &source, &Contents::new()).await?;
        let old = self.known.take().unwrap_or_default();
        self.known = Some(remember(
            old,
            source,
            &[(String::new(), true)],
            &bad,
            &failed,
        ));
        {
            let mut inner = self.shared.lock();
            inner.sweeps += 1;
            inner.last_sweep = Some(Instant::now());
            // What was queued before the sweep began, it covered (but what failed).
            let keep = |k: &String| bad.iter().chain(&failed).any(|(b, _)| plan::is_under(k, b));
            inner
                .source
                .retain(|k, d| d.generation > started_generation || keep(k));
            inner
                .target
                .retain(|k, d| d.generation > started_generation || keep(k));
        }
        metrics::counter!("warren_mirror_sweeps_total", "result" => "ok").increment(1);
        if !self.report_failures("sweep", &[(String::new(), true)], &bad, &failed) {
            self.shared.succeeded();
        }
        Ok(())
    }

    /// Reports each path that could not be read (`bad`) or written (`failed`); whether
    /// there were any.
    fn report_failures(
        &self,
        stage: &'static str,
        regions: &[(String, bool)],
        bad: &PathFailures,
        failed: &PathFailures,
    ) -> bool {
        let all: PathFailures = bad.iter().chain(failed).cloned().collect();
        for (path, why) in &all {
            self.shared.failed(
                stage,
                format!("{why} (this path is skipped; the others go on)"),
            );
            // Retried with backoff, not only at the next sweep; its lag shows meanwhile.
            self.shared.requeue(path.clone());
        }
        self.shared.path_outcomes(
            |k| regions.iter().any(|(r, deep)| in_region(k, r, *deep)),
            &all,
        );
        !all.is_empty()
    }

    /// Creates the directories above the target subtree's root, if missing.
    async fn ensure_target_parents(&mut self) -> Result<()> {
        let root = self.dst.root.clone();
        let Some(deployment_root_len) = root.match_indices('/').nth(2).map(|(i, _)| i) else {
            return Ok(());
        };
        let mut at = deployment_root_len;
        while let Some(i) = root[at + 1..].find('/') {
            let dir = &root[..at + 1 + i];
            let (h, info) = self
                .dst
                .session
                .open(dir, OpenOptions::new().read().create_dir())
                .await
                .map_err(|e| call_err("create", dir, e))?;
            tokio::spawn(h.close());
            if info.stat.kind != NodeKind::Directory {
                return Err(format!(
                    "{dir} in the target is a file, so the target subtree {root} cannot be created: delete it or give --to-subtree elsewhere"
                ));
            }
            at += 1 + i;
        }
        Ok(())
    }

    /// Applies the queued changes (up to [`BATCH`] paths); `Ok(true)` if there were any.
    /// Both sides of every path are read at once; a directory created, deleted or replaced
    /// is walked; one plan covers the batch.
    async fn apply_pending(&mut self) -> Result<Round> {
        let now = Instant::now();
        let taken: Vec<(Side, String, crate::status::Dirty)> = {
            let inner = self.shared.lock();
            inner
                .source
                .iter()
                .map(|(k, d)| (Side::Source, k.clone(), *d))
                .chain(
                    inner
                        .target
                        .iter()
                        .map(|(k, d)| (Side::Target, k.clone(), *d)),
                )
                .filter(|(_, _, d)| d.retry_at.is_none_or(|t| t <= now))
                .take(BATCH)
                .collect()
        };
        if taken.is_empty() {
            return Ok(Round::Idle);
        }
        let mut batch: std::collections::BTreeMap<String, bool> = Default::default();
        for (_, rel, d) in &taken {
            *batch.entry(rel.clone()).or_default() |= d.deep;
        }
        let rels: Vec<String> = batch.keys().cloned().collect();
        let (src_nodes, dst_nodes) = (
            self.src.read_nodes(&rels, true).await?,
            self.dst.read_nodes(&rels, false).await?,
        );
        let mut bad = self.src.take_unreadable();
        bad.extend(self.dst.take_unreadable());
        let mut source = View::new();
        let mut target = View::new();
        let mut regions: Vec<(String, bool)> = Vec::new();
        let mut contents = Contents::new();
        for (rel, deep) in batch {
            if bad.iter().any(|(b, _)| plan::is_under(&rel, b)) {
                continue;
            }
            let (s, t) = (src_nodes.get(&rel), dst_nodes.get(&rel));
            let is_dir = |n: Option<&Node>| n.is_some_and(|n| n.entry.kind == NodeKind::Directory);
            let kinds_differ = s.map(|n| n.entry.kind) != t.map(|n| n.entry.kind);
            if (deep || kinds_differ) && (is_dir(s) || is_dir(t)) {
                if rel.is_empty() && s.is_none() {
                    // The source root itself went: a sweep says so and touches nothing.
                    self.shared.resync();
                    continue;
                }
                source.extend(self.src.read_region(&rel, true).await?);
                target.extend(self.dst.read_region(&rel, true).await?);
                regions.push((rel, true));
            } else {
                if let Some(s) = s {
                    source.insert(rel.clone(), s.entry.clone());
                    if let Some(data) = &s.contents {
                        contents.insert(rel.clone(), data.clone());
                    }
                } else if rel.is_empty() {
                    self.shared.resync();
                    continue;
                }
                if let Some(t) = t {
                    target.insert(rel.clone(), t.entry.clone());
                }
                regions.push((rel, false));
            }
        }
        bad.extend(self.src.take_unreadable());
        bad.extend(self.dst.take_unreadable());
        strip(&mut source, &mut target, &bad);
        let in_any = |k: &str| regions.iter().any(|(r, deep)| in_region(k, r, *deep));
        let known = self.known.as_ref().map(|k| {
            k.iter()
                .filter(|(p, _)| in_any(p))
                .map(|(p, e)| (p.clone(), e.clone()))
                .collect::<View>()
        });
        let p = plan::plan(&source, &target, known.as_ref(), self.policy);
        self.note_target_writes(&p, &regions);
        let failed = self.execute(&p, &source, &contents).await?;
        if let Some(old) = self.known.take() {
            self.known = Some(remember(old, source, &regions, &bad, &failed));
        }
        {
            let mut inner = self.shared.lock();
            for (side, rel, dirty) in &taken {
                if bad
                    .iter()
                    .chain(&failed)
                    .any(|(b, _)| plan::is_under(rel, b))
                {
                    continue;
                }
                let map = match side {
                    Side::Source => &mut inner.source,
                    Side::Target => &mut inner.target,
                };
                if map.get(rel).map(|d| d.generation) == Some(dirty.generation) {
                    map.remove(rel);
                    if *side == Side::Source {
                        metrics::histogram!("warren_mirror_apply_delay_seconds")
                            .record(dirty.first_seen.elapsed().as_secs_f64());
                    }
                }
            }
        }
        if self.report_failures("apply", &regions, &bad, &failed) {
            return Ok(Round::SomeFailed);
        }
        self.shared.succeeded();
        Ok(Round::Applied)
    }

    /// Counts, logs and (under `report`) records the target writes a plan found; forgets
    /// kept writes in the region that are gone.
    fn note_target_writes(&self, p: &plan::Plan, regions: &[(String, bool)]) {
        let mut inner = self.shared.lock();
        inner.kept.retain(|k, _| {
            !regions.iter().any(|(r, deep)| in_region(k, r, *deep))
                || p.divergences.iter().any(|d| d.kept && d.path == *k)
        });
        for d in p.divergences.iter().filter(|d| d.target_write) {
            let shown = join(&self.dst.root, &d.path);
            if d.kept {
                if !inner.kept.contains_key(&d.path) {
                    tracing::warn!(path = %shown, "mirror: a write made directly in the target is kept and reported (--on-target-write report)");
                    inner.kept.insert(
                        d.path.clone(),
                        format!("{shown} differs from the source, which did not change"),
                    );
                    inner.target_writes_reported += 1;
                    metrics::counter!("warren_mirror_target_writes_total", "action" => "reported")
                        .increment(1);
                }
            } else {
                tracing::warn!(path = %shown, "mirror: a write made directly in the target is overwritten with the source's version");
                inner.target_writes_overwritten += 1;
                metrics::counter!("warren_mirror_target_writes_total", "action" => "overwritten")
                    .increment(1);
            }
        }
    }

    /// Executes a plan's actions in order at the target; consecutive file writes (whose
    /// parents exist by then) go [`BATCH`] at a time, at once. An action that fails for its
    /// path alone is skipped (with what depends on it: below a directory not created,
    /// above a child not deleted) and returned; any other failure stops the plan.
    async fn execute(
        &mut self,
        p: &plan::Plan,
        source: &View,
        contents: &Contents,
    ) -> Result<PathFailures> {
        let mut failed: PathFailures = Vec::new();
        let mut writes: Vec<&str> = Vec::new();
        for action in &p.actions {
            let path = action.path();
            let blocked = failed.iter().any(|(f, _)| match action {
                // A delete waits for its children's deletes; anything else for its parents.
                Action::Delete { .. } => plan::is_under(f, path),
                _ => plan::is_under(path, f),
            });
            if blocked {
                continue;
            }
            if let Action::Write { path, .. } = action {
                writes.push(path);
                if writes.len() < BATCH {
                    continue;
                }
            } else {
                self.write_files(&writes, source, contents, &mut failed)
                    .await?;
                writes.clear();
                match self.apply(action).await {
                    Ok(()) => self.applied(action.kind(), 1),
                    Err(e) if e.path_level => failed.push((path.to_string(), e.message)),
                    Err(e) => return Err(e.message),
                }
                continue;
            }
            self.write_files(&writes, source, contents, &mut failed)
                .await?;
            writes.clear();
        }
        self.write_files(&writes, source, contents, &mut failed)
            .await?;
        Ok(failed)
    }

    fn applied(&self, kind: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        metrics::counter!("warren_mirror_changes_applied_total", "kind" => kind).increment(n);
        *self.shared.lock().applied.entry(kind).or_default() += n;
    }

    /// Writes these files (relative paths) at the target, all at once.
    async fn write_files(
        &self,
        paths: &[&str],
        source: &View,
        contents: &Contents,
        failed: &mut PathFailures,
    ) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let results = futures::future::join_all(
            paths
                .iter()
                .map(|rel| self.write_file(rel, source.get(*rel), contents.get(*rel))),
        )
        .await;
        let done = results.iter().filter(|r| matches!(r, Ok(true))).count();
        self.applied("write", done as u64);
        let mut fatal = None;
        for (path, r) in paths.iter().zip(results) {
            match r {
                Ok(_) => {}
                Err(e) if e.path_level => failed.push((path.to_string(), e.message)),
                Err(e) => fatal = Some(e.message),
            }
        }
        fatal.map_or(Ok(()), Err)
    }

    /// Copies one file from the source to the target: the contents read with the view if
    /// they are at hand (`entry` says their checksum and ACL names), else read now. `Ok(false)`
    /// if the source file went meanwhile (its event follows).
    async fn write_file(
        &self,
        rel: &str,
        entry: Option<&Entry>,
        data: Option<&Vec<u8>>,
    ) -> std::result::Result<bool, ActionError> {
        let (data, checksum, acl) = match (data, entry) {
            (Some(d), Some(e)) => (d.clone(), e.checksum, e.acl.clone()),
            _ => {
                let source = join(&self.src.root, rel);
                let read = async {
                    let (h, _) = self
                        .src
                        .session
                        .open(&source, OpenOptions::new().read())
                        .await?;
                    let r = h.contents().await;
                    tokio::spawn(h.close());
                    r
                }
                .await;
                match read {
                    Ok((d, stat)) => (d, stat.checksum, stat.acl),
                    Err(e) if not_found(&e) || e.code() == Some(ErrorCode::InvalidArgument) => {
                        // Gone or replaced since the view was read: its event follows.
                        self.shared.mark(Side::Source, rel.to_string(), true);
                        return Ok(false);
                    }
                    Err(e) => return Err(act_err("read", &source, e)),
                }
            }
        };
        let full = join(&self.dst.root, rel);
        let (h, info) = self
            .dst
            .session
            .open(
                &full,
                OpenOptions::new()
                    .write()
                    .change_acl()
                    .create_file(data.clone())
                    .acl(acl.clone()),
            )
            .await
            .map_err(|e| act_err("create", &full, e))?;
        let r = async {
            if info.stat.kind != NodeKind::File {
                return Err(in_the_way(format!(
                    "{full} in the target is a directory, expected a file; the next sweep replaces it"
                )));
            }
            if !info.created && info.stat.checksum != checksum {
                h.set_contents(data)
                    .await
                    .map_err(|e| act_err("write", &full, e))?;
            }
            if info.stat.acl != acl {
                h.set_acl(acl)
                    .await
                    .map_err(|e| act_err("set the ACL of", &full, e))?;
            }
            Ok(true)
        }
        .await;
        tokio::spawn(h.close());
        r
    }

    /// One action other than a file write.
    async fn apply(&mut self, action: &Action) -> std::result::Result<(), ActionError> {
        let full = join(&self.dst.root, action.path());
        let dst = self.dst.session.clone();
        match action {
            Action::Delete { path } => {
                self.dst.unwatch(path);
                match dst.open(&full, OpenOptions::new().write()).await {
                    Ok((h, _)) => {
                        let r = h.delete().await;
                        tokio::spawn(h.close());
                        match r {
                            Ok(()) => {}
                            Err(e) if not_found(&e) => {}
                            Err(e) => return Err(act_err("delete", &full, e)),
                        }
                    }
                    Err(e) if not_found(&e) => {}
                    Err(e) => return Err(act_err("open", &full, e)),
                }
            }
            Action::Mkdir { path, acl } => {
                let (h, info) = dst
                    .open(
                        &full,
                        OpenOptions::new()
                            .write()
                            .change_acl()
                            .create_dir()
                            .acl(acl.clone()),
                    )
                    .await
                    .map_err(|e| act_err("create", &full, e))?;
                let r = async {
                    if info.stat.kind != NodeKind::Directory {
                        return Err(in_the_way(format!("{full} in the target is a file, expected a directory; the next sweep replaces it")));
                    }
                    if info.stat.acl != *acl {
                        h.set_acl(acl.clone())
                            .await
                            .map_err(|e| act_err("set the ACL of", &full, e))?;
                    }
                    Ok(())
                }
                .await;
                tokio::spawn(h.close());
                r?;
                self.dst.watch(path).await?;
            }
            Action::Write { path, .. } => {
                // Writes normally go through `write_files`; one alone is the same.
                self.write_file(path, None, None).await?;
            }
            Action::SetAcl { acl, .. } => {
                let (h, _) = dst
                    .open(&full, OpenOptions::new().change_acl())
                    .await
                    .map_err(|e| act_err("open", &full, e))?;
                let r = h.set_acl(acl.clone()).await;
                tokio::spawn(h.close());
                r.map_err(|e| act_err("set the ACL of", &full, e))?;
            }
        }
        Ok(())
    }
}

/// The memory after a round: `old` with the regions replaced by `source`, except the paths
/// that could not be read (`bad`: the old memory stays) or written (`failed`: the old
/// memory of that path stays, so the difference is not taken for a target write).
fn remember(
    old: View,
    source: View,
    regions: &[(String, bool)],
    bad: &PathFailures,
    failed: &PathFailures,
) -> View {
    let skipped = |k: &str| {
        bad.iter().any(|(b, _)| plan::is_under(k, b)) || failed.iter().any(|(f, _)| f == k)
    };
    let mut out: View = old
        .iter()
        .filter(|(k, _)| skipped(k) || !regions.iter().any(|(r, deep)| in_region(k, r, *deep)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(source.into_iter().filter(|(k, _)| !skipped(k)));
    out
}

/// Whether `path` is in the region `rel` (with `deep`, its subtree).
fn in_region(path: &str, rel: &str, deep: bool) -> bool {
    if deep {
        plan::is_under(path, rel)
    } else {
        path == rel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("/ls/d/a", "/ls/d/a").as_deref(), Some(""));
        assert_eq!(relative("/ls/d/a", "/ls/d/a/b/c").as_deref(), Some("b/c"));
        assert_eq!(relative("/ls/d/a", "/ls/d/ab"), None);
        assert_eq!(relative("/ls/d/a", "/ls/d"), None);
        assert_eq!(join("/ls/d/a", ""), "/ls/d/a");
        assert_eq!(join("/ls/d/a", "x/y"), "/ls/d/a/x/y");
        assert_eq!(relative_parent("x/y"), "x");
        assert_eq!(relative_parent("x"), "");
    }

    #[test]
    fn regions() {
        assert!(in_region("a/b", "a", true));
        assert!(!in_region("a/b", "a", false));
        assert!(in_region("a", "a", false));
        assert!(!in_region("ab", "a", true));
        assert!(in_region("ab", "", true));
    }

    #[test]
    fn unreadable_and_failed_paths_keep_their_old_memory() {
        let e = |sum| Entry::file(sum, Default::default());
        let view =
            |v: &[(&str, u64)]| -> View { v.iter().map(|(p, s)| (p.to_string(), e(*s))).collect() };
        let old = view(&[("a", 1), ("b", 1), ("d/x", 1), ("other", 1)]);
        let source = view(&[("a", 2), ("b", 2), ("d/x", 2), ("new", 2)]);
        let bad = vec![("d".to_string(), "denied".to_string())];
        let failed = vec![("b".to_string(), "denied".to_string())];
        let regions = [
            ("a".to_string(), false),
            ("b".to_string(), false),
            ("d".to_string(), true),
            ("new".to_string(), false),
        ];
        let known = remember(old, source, &regions, &bad, &failed);
        // `other` was not in the round; `b` failed and `d/x` was unreadable: old memory.
        assert_eq!(
            known,
            view(&[("a", 2), ("b", 1), ("d/x", 1), ("new", 2), ("other", 1)])
        );

        let mut s = view(&[("d", 1), ("d/x", 1), ("dx", 1)]);
        let mut t = s.clone();
        strip(&mut s, &mut t, &bad);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["dx"]);
        assert_eq!(s, t);
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(Backoff(0).delay(), MIN_BACKOFF);
        assert_eq!(Backoff(1).delay(), MIN_BACKOFF * 2);
        assert_eq!(Backoff(40).delay(), MAX_BACKOFF);
    }
}
