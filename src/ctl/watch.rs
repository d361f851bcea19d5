//! `warren ctl watch`: a node's events, one line each, until a count or Ctrl-C.

use warren_client::{Event, EventMask, OpenOptions, Session};

use super::failure::Failure;
use super::output::{self, Output};

/// `watch`: prints events until `count` or Ctrl-C.
pub(crate) async fn watch(
    session: &Session,
    path: &str,
    count: Option<u64>,
    out: Output,
) -> Result<(), Failure> {
    // Subscribe before opening, so no event can slip between the two.
    let mut events = session.events();
    let opts = OpenOptions::new().read().events(EventMask::ALL);
    let (handle, _) = session.open(path, opts).await?;
    let mut seen = 0u64;
    let result = loop {
        if count.is_some_and(|n| seen >= n) {
            break Ok(());
        }
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        match event {
            Some(Event::Expired) | None => {
                break Err(Failure::expired(format!(
                    "the session expired while watching {}",
                    handle.path()
                )))
            }
            Some(event) => {
                if let Err(e) = output::print_line(&output::event_text(&event, out.json)) {
                    break Err(e);
                }
                seen += 1;
            }
        }
    };
    handle.close().await;
    result
}
