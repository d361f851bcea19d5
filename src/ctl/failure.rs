//! [`Failure`]: what `warren ctl` reports when a command fails, `error: CODE: message` on
//! stderr with CODE from the error table (or `UNAVAILABLE` when no server answered).

use warren_client::Error;

/// A failure to report: `error: CODE: message`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: e.code_name(),
            message: e.message(),
        }
    }
}

impl Failure {
    /// `INVALID_ARGUMENT`: the command's input is wrong; `message` says how to fix it.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure {
            code: "INVALID_ARGUMENT",
            message: message.into(),
        }
    }

    /// `INTERNAL`: ctl itself could not do `what` (e.g. write to stdout).
    pub(crate) fn io(what: &str, e: std::io::Error) -> Self {
        Failure {
            code: "INTERNAL",
            message: format!("{what}: {e}"),
        }
    }

    /// `SESSION_EXPIRED`: the session ended under a command that needed it.
    pub(crate) fn expired(message: String) -> Self {
        Failure {
            code: "SESSION_EXPIRED",
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_client::Sequencer;

    #[test]
    fn client_errors_keep_their_code() {
        let f = Failure::from(Error::Transport("cannot reach h:1: refused".into()));
        assert_eq!(
            (f.code, f.message.as_str()),
            ("UNAVAILABLE", "cannot reach h:1: refused")
        );
        let f = Failure::from(
            "nonsense"
                .parse::<Sequencer>()
                .expect_err("not a sequencer"),
        );
        assert_eq!(f.code, "INVALID_ARGUMENT");
    }
}
