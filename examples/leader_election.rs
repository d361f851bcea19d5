//! Leader election with a Warren lock, and a server that fences requests with the leader's
//! sequencer — the pattern Chubby was built for.
//!
//! Several **contenders** try to take an exclusive lock on a file (`/election/leader` by
//! default). The one that gets it is the leader: it writes its name into the file (so
//! anyone can read who leads) and sends requests to a **server**, each carrying the
//! lock's *sequencer* (`<path>:x:<instance>:<lock_generation>`). The server asks Warren
//! whether that sequencer is still current before acting on a request, and remembers the
//! newest lock generation it has accepted. A leader that lost its lock without noticing
//! (it was paused, partitioned, or its session expired) therefore cannot do harm: its
//! requests carry an old sequencer and are refused.
//!
//! ```text
//! # a local deployment (meta cell, 3 data cells, 2 proxies at 127.0.0.1:7201 and :7202)
//! cargo run --release -- dev
//! # the fenced server (in another terminal)
//! cargo run --release --example leader_election -- server --endpoint 127.0.0.1:7201 --listen 127.0.0.1:7300
//! # two contenders; kill the leader (Ctrl-C) and watch the other take over
//! cargo run --release --example leader_election -- contend --endpoint 127.0.0.1:7201 --name alice --server 127.0.0.1:7300
//! cargo run --release --example leader_election -- contend --endpoint 127.0.0.1:7202 --name bob --server 127.0.0.1:7300
//! ```
//!
//! Give the **proxies** as `--endpoint` (or a single cell: `warren cell --name c0 --data
//! /tmp/warren --listen 127.0.0.1:7100`, then `--endpoint 127.0.0.1:7100`). With `warren
//! dev`, 127.0.0.1:7100 is the *meta cell*, which keeps only the partition map and answers
//! `WRONG_CELL` for anything else: a contender pointed there stops with an error saying so.
//!
//! What each prints on stdout (one line per fact, flushed at once; progress goes to stderr):
//!
//! ```text
//! server:   listening 127.0.0.1:7300
//!           ok /ls/local/election/leader:x:1:2 alice 7        (a request it accepted)
//!           rejected stale /ls/local/election/leader:x:1:1 bob 3
//! contend:  leader alice /ls/local/election/leader:x:1:2       (once it leads)
//!           accepted 7                                          (the server took request 7)
//!           rejected 8                                          (the server refused it: no
//!                                                               longer leader; contend again)
//! ```
//!
//! The wire protocol between contender and server is one line per request,
//! `SEQUENCER DATA`, answered by one line: `ok`, or `rejected stale` (not the current
//! holder, or older than one already accepted), `rejected malformed` (not a sequencer),
//! `rejected unavailable` (Warren could not be asked; refusing is the safe answer).
//!
//! Both stop cleanly on Ctrl-C or SIGTERM: a contender closes its session, which releases
//! the lock at once (a killed one loses it when its session expires, about a lease later).
//!
//! A contender never spins: after a refused request it lets go of the lock and waits
//! before contending again, and after a failed request or a lost session it waits before
//! trying again, each time twice as long as the last (from 100 ms up to 5 s; an accepted
//! request starts over). An error it cannot recover from by waiting (a wrong endpoint,
//! no permission) ends it with that error.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use warren_client::{ClientOptions, ErrorCode, Event, LockMode, OpenOptions, Sequencer, Session};

/// How often the leader sends a request.
const REQUEST_EVERY: Duration = Duration::from_millis(200);
/// A contender whose session expires (or cannot be made) this many times in a row gives
/// up.
const MAX_SESSIONS: u32 = 10;

/// Bounded exponential backoff: waits [`Backoff::FIRST`], then twice as long each time, at
/// most [`Backoff::LONGEST`]; [`Backoff::reset`] after a success starts over.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const LONGEST: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Waits the current delay, then doubles it (up to the bound).
    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Self::LONGEST);
    }
}

#[derive(Parser)]
#[command(about = "Leader election with a Warren lock, and a server fenced by sequencers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Contend for leadership; while leader, send fenced requests to the server.
    Contend(ContendArgs),
    /// Serve requests, accepting only those carrying the current leader's sequencer.
    Server(ServerArgs),
}

#[derive(Args)]
struct ContendArgs {
    /// Warren endpoints (any replicas of the cell), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT[,…]"
    )]
    endpoint: Vec<String>,
    /// This contender's name, published in the lock file while it leads.
    #[arg(long)]
    name: String,
    /// The fenced server (`server` subcommand) to send requests to.
    #[arg(long, value_name = "HOST:PORT")]
    server: String,
    /// The lock file; missing directories are created.
    #[arg(long, default_value = "/election/leader")]
    lock: String,
}

#[derive(Args)]
struct ServerArgs {
    /// Warren endpoints, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "HOST:PORT[,…]"
    )]
    endpoint: Vec<String>,
    /// Where to listen for requests.
    #[arg(long, value_name = "HOST:PORT")]
    listen: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Contend(args) => contend(args).await,
        Command::Server(args) => serve(args).await,
    }
}

/// Prints one line on stdout and flushes it, so whoever reads our output sees it now.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

// ------------------------------------------------------------------------- contender

async fn contend(args: ContendArgs) -> Result<()> {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new();
    // A session that expires loses the lock; start again with a new one (a few times),
    // waiting longer each time.
    for _ in 0..MAX_SESSIONS {
        let connected = tokio::select! {
            r = Session::connect_with(ClientOptions::new(args.endpoint.clone())) => r,
            () = &mut shutdown => return Ok(()),
        };
        let session = match connected {
            Ok(session) => session,
            Err(e) if e.is_retryable() => {
                eprintln!(
                    "{}: cannot connect to Warren ({e}); trying again",
                    args.name
                );
                backoff.wait().await;
                continue;
            }
            Err(e) => return Err(e).context("cannot connect to Warren"),
        };
        report_session_events(&session);
        let outcome = tokio::select! {
            r = lead(&session, &args, &mut backoff) => r,
            () = &mut shutdown => {
                // Closing the session releases the lock at once, so another contender
                // takes over without waiting for our lease to run out.
                let _ = session.close().await;
                return Ok(());
            }
        };
        let _ = session.close().await;
        let e = match outcome {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        match warren_error(&e).and_then(warren_client::Error::code) {
            Some(ErrorCode::SessionExpired) => {
                eprintln!("{}: session expired; starting a new one", args.name);
            }
            Some(ErrorCode::WrongCell) => {
                return Err(e.context(format!(
                    "{} serves only part of the namespace, not {} (with `warren dev`, \
                     127.0.0.1:7100 is the meta cell): give the proxies as --endpoint, \
                     e.g. 127.0.0.1:7201",
                    args.endpoint.join(","),
                    args.lock
                )));
            }
            _ if warren_error(&e).is_some_and(warren_client::Error::is_retryable) => {
                eprintln!("{}: {e:#}; trying again", args.name);
            }
            _ => return Err(e),
        }
        backoff.wait().await;
    }
    bail!(
        "{}: lost or could not make a session {MAX_SESSIONS} times; giving up",
        args.name
    )
}

/// The Warren error behind `e`, if it is one.
fn warren_error(e: &anyhow::Error) -> Option<&warren_client::Error> {
    e.downcast_ref::<warren_client::Error>()
}

/// Tells the person watching (on stderr) when the session is in trouble and when it
/// recovers: a leader in jeopardy cannot be sure it still leads.
fn report_session_events(session: &Session) {
    let mut events = session.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Jeopardy | Event::Safe | Event::MasterFailover | Event::Expired => {
                    eprintln!("session: {event}")
                }
                _ => {}
            }
        }
    });
}

/// Takes the lock (waiting as long as it takes), publishes our name, and sends fenced
/// requests until the server refuses one; then lets go, waits (`backoff`) and contends
/// again. Returns only on error.
async fn lead(session: &Session, args: &ContendArgs, backoff: &mut Backoff) -> Result<()> {
    create_parents(session, &args.lock).await?;
    let (lock, _) = session
        .open(
            &args.lock,
            OpenOptions::new().write().create_file(Vec::new()),
        )
        .await
        .with_context(|| format!("cannot open {}", args.lock))?;
    let mut request = 0u64;
    loop {
        eprintln!("{}: waiting for the lock on {}", args.name, lock.path());
        let sequencer = lock.acquire(LockMode::Exclusive, None).await?;
        lock.set_contents(args.name.as_bytes()).await?;
        say(&format!("leader {} {sequencer}", args.name));

        // Lead until the server says our sequencer is stale.
        let mut server = ServerConnection::new(&args.server);
        let mut tick = tokio::time::interval(REQUEST_EVERY);
        loop {
            tick.tick().await;
            request += 1;
            match server
                .send(&sequencer, &format!("{} {request}", args.name))
                .await
            {
                Ok(reply) if reply == "ok" => {
                    say(&format!("accepted {request}"));
                    backoff.reset();
                }
                Ok(reply) => {
                    say(&format!("rejected {request}"));
                    eprintln!(
                        "{}: the server answered {reply:?}; no longer leader",
                        args.name
                    );
                    break;
                }
                // The server is unreachable: keep leading, try again after a wait.
                Err(e) => {
                    eprintln!("{}: request {request} not sent: {e:#}", args.name);
                    backoff.wait().await;
                }
            }
        }
        // We may still hold the lock (say the server was wrong); let go, and wait before
        // contending again so that a server refusing everyone does not make us spin.
        let _ = lock.release().await;
        backoff.wait().await;
    }
}

/// Creates the directories above `path` that do not exist yet (`/a/b/c` → `/a`, `/a/b`).
async fn create_parents(session: &Session, path: &str) -> Result<()> {
    let full = session.full_path(path)?;
    let root = session.full_path("/")?;
    let Some(relative) = full.strip_prefix(&root) else {
        return Ok(());
    };
    let mut dir = root;
    let components: Vec<&str> = relative.split('/').filter(|c| !c.is_empty()).collect();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        dir = format!("{dir}/{component}");
        let (handle, _) = session
            .open(&dir, OpenOptions::new().create_dir())
            .await
            .with_context(|| format!("cannot create {dir}"))?;
        handle.close().await;
    }
    Ok(())
}

/// A line-protocol connection to the fenced server, (re)connected on demand.
struct ServerConnection {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl ServerConnection {
    fn new(addr: &str) -> Self {
        ServerConnection {
            addr: addr.to_string(),
            stream: None,
        }
    }

    /// Sends `SEQUENCER DATA` and returns the reply line.
    async fn send(&mut self, sequencer: &Sequencer, data: &str) -> Result<String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .with_context(|| format!("cannot reach the server at {}", self.addr))?;
            self.stream = Some(BufReader::new(stream));
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("not connected");
        };
        let exchange = async {
            stream
                .get_mut()
                .write_all(format!("{sequencer} {data}\n").as_bytes())
                .await?;
            let mut reply = String::new();
            if stream.read_line(&mut reply).await? == 0 {
                bail!("the server closed the connection");
            }
            Ok(reply.trim().to_string())
        };
        let result = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("no reply within 10 s")));
        if result.is_err() {
            self.stream = None; // reconnect next time
        }
        result
    }
}

// ------------------------------------------------------------------------- server

/// The newest holding accepted per lock: (instance, lock generation). A request whose
/// sequencer is older is refused even if a check raced with a change of leader.
type Accepted = Arc<Mutex<HashMap<String, (u64, u64)>>>;

async fn serve(args: ServerArgs) -> Result<()> {
    let session = Session::connect_with(ClientOptions::new(args.endpoint.clone()))
        .await
        .context("cannot connect to Warren")?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    say(&format!("listening {}", listener.local_addr()?));
    let accepted: Accepted = Arc::default();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(stream, session.clone(), accepted.clone()));
                }
                Err(e) => eprintln!("accept failed: {e}"),
            },
            () = &mut shutdown => break,
        }
    }
    let _ = session.close().await;
    Ok(())
}

/// Answers each request line on one connection.
async fn serve_connection(stream: TcpStream, session: Session, accepted: Accepted) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = decide(&session, &accepted, &line).await;
        if write
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// The fencing decision for one request line, printed and returned.
async fn decide(session: &Session, accepted: &Accepted, line: &str) -> &'static str {
    let (text, data) = line.split_once(' ').unwrap_or((line, ""));
    let Ok(sequencer) = text.parse::<Sequencer>() else {
        say(&format!("rejected malformed {line}"));
        return "rejected malformed";
    };
    // Is this still the holding of the lock? Warren knows.
    let current = match session.check_sequencer(&sequencer).await {
        Ok(current) => current,
        Err(e) => {
            eprintln!("cannot check {sequencer}: {e}");
            say(&format!("rejected unavailable {line}"));
            return "rejected unavailable";
        }
    };
    // Never go back to an older holding, even if the check raced with a new leader.
    let holding = (sequencer.instance, sequencer.lock_generation);
    let fresh = {
        let mut newest = accepted.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = current && newest.get(&sequencer.path).is_none_or(|n| holding >= *n);
        if fresh {
            newest.insert(sequencer.path.clone(), holding);
        }
        fresh
    };
    if fresh {
        say(&format!("ok {sequencer} {data}"));
        "ok"
    } else {
        say(&format!("rejected stale {sequencer} {data}"));
        "rejected stale"
    }
}
