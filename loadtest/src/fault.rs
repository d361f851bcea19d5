//! Faults injected during a run (`--kill proxy@30s`, `--kill master:c1@30s`,
//! `--restart master:c1@35s`): when, to what, and what happened. The run only schedules
//! them; an [`Injector`] given by the caller (the deployment `warren loadtest --deploy`
//! launched) carries them out, and names its processes for the report's `processes`.

use crate::deploy::AddedCell;
use crate::procstat::MemberProcess;
use crate::report::float_or_null;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What a fault does to its member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `kill -9` the member's process.
    Kill,
    /// Start a killed member again, with its old address and data.
    Restart,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Restart => "restart",
        }
    }
}

/// One scheduled fault: `action` on `member` (e.g. `proxy`, `proxy:2`, `master:c1`) at `at`
/// after the measured window starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub action: Action,
    pub member: String,
    pub at: Duration,
}

impl Fault {
    /// Parses `MEMBER@TIME` (`proxy@30s`, `master:c1@1m`) for `action`. The member's
    /// syntax is the injector's business; this checks only the shape.
    pub fn parse(action: Action, s: &str) -> Result<Fault, String> {
        let (member, at) = s.rsplit_once('@').ok_or_else(|| {
            format!(
                "`{s}`: give MEMBER@TIME, e.g. proxy@30s or master:c1@30s (TIME from the \
                 start of the measured window)"
            )
        })?;
        let member = member.trim();
        if member.is_empty() {
            return Err(format!("`{s}`: the member before @ is empty"));
        }
        let at = crate::run::parse_duration(at)?;
        Ok(Fault {
            action,
            member: member.to_string(),
            at,
        })
    }
}

/// Carries out faults. `inject` resolves when the fault has taken effect (a killed process
/// has been reaped; a restarted one serves again).
pub trait Injector: Send + Sync {
    fn inject<'a>(
        &'a self,
        action: Action,
        member: &'a str,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

    /// The deployment's processes as they are now, read at the window's start and end for
    /// the report's `processes` (see [`crate::procstat`]); none by default.
    fn processes(&self) -> Pin<Box<dyn Future<Output = Vec<MemberProcess>> + Send + '_>> {
        Box::pin(async { Vec::new() })
    }

    /// Starts one more data cell, joined to the deployment's meta cell but owning no slot
    /// yet (`--reshard add-cell@T`, see [`crate::reshard`]). By default there is none to
    /// start: only a deployment the load test launched can grow.
    fn add_cell(&self) -> Pin<Box<dyn Future<Output = anyhow::Result<AddedCell>> + Send + '_>> {
        Box::pin(async {
            anyhow::bail!("this deployment cannot start a cell: launch one with --deploy dev")
        })
    }
}

/// What happened to one scheduled fault, as reported.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRecord {
    /// `kill` or `restart`.
    pub action: String,
    pub member: String,
    /// When it was scheduled, in seconds from the start of the measured window.
    #[serde(deserialize_with = "float_or_null")]
    pub at_s: f64,
    /// When it had taken effect (null if it failed).
    pub done_s: Option<f64>,
    /// Why it failed (null if it worked).
    pub error: Option<String>,
}

impl FaultRecord {
    /// When the fault took effect, or why it did not (`?` when the record does not say).
    pub fn outcome(&self) -> Result<f64, &str> {
        match (&self.error, self.done_s) {
            (None, Some(done)) => Ok(done),
            (error, _) => Err(error.as_deref().unwrap_or("?")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!(
            Fault::parse(Action::Kill, "proxy@30s"),
            Ok(Fault {
                action: Action::Kill,
                member: "proxy".into(),
                at: Duration::from_secs(30)
            })
        );
        let f = Fault::parse(Action::Restart, "master:c1@1m5s").unwrap();
        assert_eq!(f.member, "master:c1");
        assert_eq!(f.at, Duration::from_secs(65));
        assert!(Fault::parse(Action::Kill, "proxy")
            .unwrap_err()
            .contains("MEMBER@TIME"));
        assert!(Fault::parse(Action::Kill, "@3s")
            .unwrap_err()
            .contains("empty"));
        assert!(Fault::parse(Action::Kill, "proxy@soon")
            .unwrap_err()
            .contains("e.g. 30s"));
    }
}
