//! The lock commands of `warren ctl`: `lock` (acquire, print the sequencer, hold, release,
//! reporting the session's events on stderr) and `check-sequencer`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::watch;
use warren_client::{Event, EventStream, LockMode, OpenOptions, Sequencer, Session};

use super::failure::Failure;
use super::output::{self, Output};
use super::{EXIT_INTERRUPTED, EXIT_STALE};

/// The stderr line `lock` prints for a session event, if it is one it reports.
pub(crate) fn session_event_line(event: &Event) -> Option<&'static str> {
    match event {
        Event::Jeopardy => Some("jeopardy"),
        Event::Safe => Some("safe"),
        Event::MasterFailover => Some("failover"),
        Event::Expired => Some("expired"),
        _ => None,
    }
}

/// Prints the session's state events on stderr as they come (see the module docs) until
/// the session ends; sets `expired` if it expired.
async fn report_session_events(mut events: EventStream, expired: watch::Sender<bool>) {
    while let Some(event) = events.recv().await {
        if let Some(line) = session_event_line(&event) {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{line}").and_then(|()| stderr.flush());
        }
        if event == Event::Expired {
            expired.send_replace(true);
        }
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `lock`: acquire, print the sequencer, hold (for `hold`, or until Ctrl-C), release.
pub(crate) async fn lock(
    session: &Session,
    path: &str,
    mode: LockMode,
    try_only: bool,
    hold: Option<Duration>,
    out: Output,
) -> Result<ExitCode, Failure> {
    // Subscribed before anything else, so every state change is reported.
    let (expired_tx, mut expired) = watch::channel(false);
    let _reporter = AbortOnDrop(tokio::spawn(report_session_events(
        session.events(),
        expired_tx,
    )));
    let (handle, _) = session.open(path, OpenOptions::new().write()).await?;
    let acquired = if try_only {
        handle.try_acquire(mode).await
    } else {
        // On expiry the acquire fails by itself (SESSION_EXPIRED).
        tokio::select! {
            r = handle.acquire(mode, None) => r,
            _ = tokio::signal::ctrl_c() => {
                handle.close().await;
                return Ok(ExitCode::from(EXIT_INTERRUPTED));
            }
        }
    };
    let sequencer = match acquired {
        Ok(s) => s,
        Err(e) => {
            handle.close().await;
            return Err(e.into());
        }
    };
    output::print_line(&output::sequencer_text(&sequencer, out))?;

    let sleep = async {
        match hold {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sleep => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = expired.wait_for(|e| *e) => {
            let message = format!(
                "the session expired while holding the lock on {}; it is lost",
                handle.path()
            );
            handle.close().await;
            return Err(Failure::expired(message));
        }
    }
    let released = handle.release().await;
    handle.close().await;
    released?;
    Ok(ExitCode::SUCCESS)
}

/// `check-sequencer`: `current` (exit 0) or `stale` (exit 1).
pub(crate) async fn check_sequencer(
    session: &Session,
    sequencer: &str,
    out: Output,
) -> Result<ExitCode, Failure> {
    let parsed: Sequencer = sequencer.parse()?;
    let current = session.check_sequencer(&parsed).await?;
    output::print_line(&output::check_text(&parsed, current, out))?;
    Ok(if current {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_STALE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_events_on_stderr() {
        assert_eq!(session_event_line(&Event::Jeopardy), Some("jeopardy"));
        assert_eq!(session_event_line(&Event::Safe), Some("safe"));
        assert_eq!(session_event_line(&Event::MasterFailover), Some("failover"));
        assert_eq!(session_event_line(&Event::Expired), Some("expired"));
        assert_eq!(
            session_event_line(&Event::LockAcquired { path: "/a".into() }),
            None
        );
    }
}
