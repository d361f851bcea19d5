//! [`Failure`]: what `warren ctl` reports when a command fails, `error: CODE: message` on
//! stderr with CODE from the error table: a Warren error's own, `UNREACHABLE` when no server
//! could be reached (nothing was sent), `OUTCOME_UNKNOWN` when the call was lost after it
//! may have been sent (docs/ctl.md, "Errors").

use warren_client::Error;
use warren_proto::ErrorCode;

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

/// Checks that every endpoint is `HOST:PORT`, naming the one that is not.
pub(crate) fn check_endpoints(endpoints: &[String]) -> Result<(), Failure> {
    for e in endpoints {
        let port = e.rsplit_once(':').map(|(_, p)| p);
        if port.is_none_or(|p| p.parse::<u16>().is_err()) {
            return Err(Failure::invalid(format!(
                "endpoint {e:?} has no port: write HOST:PORT, e.g. 127.0.0.1:7201 (the first \
                 proxy of `warren dev`) or 127.0.0.1:7100 (its meta cell)"
            )));
        }
    }
    Ok(())
}

/// Whether `code` is the table's code for a transport failure (no answer from a server).
fn no_answer(code: &str) -> bool {
    code == ErrorCode::Unreachable.as_str_name() || code == ErrorCode::OutcomeUnknown.as_str_name()
}

/// Makes an `UNREACHABLE` (or `OUTCOME_UNKNOWN`) failure at `endpoints` say what to check:
/// an endpoint that answers plain HTTP/1 is an admin port, not a gRPC one (gRPC's HTTP/2
/// otherwise fails there as "broken pipe" or a protocol error; nothing was done there, so
/// `UNREACHABLE`); else, whether `warren dev` or the servers run at those addresses.
pub(crate) async fn with_hint(mut f: Failure, endpoints: &[String]) -> Failure {
    if !no_answer(f.code) && f.code != "INTERNAL" && f.code != "UNKNOWN" {
        return f;
    }
    for e in endpoints {
        let probe =
            warren_loadtest::http::get(e, "/healthz", std::time::Duration::from_secs(1)).await;
        if probe.is_ok_and(|r| r.status > 0) {
            f.code = ErrorCode::Unreachable.as_str_name();
            f.message = format!(
                "{e} answers plain HTTP/1: it is an admin (HTTP) port, not a gRPC port; \
                 in `warren dev`'s layout the gRPC port is the admin port minus 80 (the \
                 meta cell 127.0.0.1:7100, proxies 127.0.0.1:7201…) ({})",
                f.message
            );
            return f;
        }
    }
    // A TLS refusal already names its fix; the server is there.
    if no_answer(f.code) && !f.message.contains("TLS") {
        f.message = format!(
            "{}; is `warren dev` (or the cell or proxy) running and listening at {}?",
            f.message,
            endpoints.join(",")
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_client::Sequencer;

    #[test]
    fn client_errors_keep_their_code() {
        let f = Failure::from(Error::unreachable("cannot reach h:1: refused"));
        assert_eq!(
            (f.code, f.message.as_str()),
            ("UNREACHABLE", "cannot reach h:1: refused")
        );
        let f = Failure::from(Error::outcome_unknown("lost the call to h:1: reset"));
        assert_eq!(f.code, "OUTCOME_UNKNOWN");
        let f = Failure::from(
            "nonsense"
                .parse::<Sequencer>()
                .expect_err("not a sequencer"),
        );
        assert_eq!(f.code, "INVALID_ARGUMENT");
    }

    #[test]
    fn endpoints_need_a_port() {
        assert!(check_endpoints(&["127.0.0.1:7201".into(), "[::1]:7100".into()]).is_ok());
        let f = check_endpoints(&["localhost".into()]).unwrap_err();
        assert!(
            f.message.contains("\"localhost\" has no port"),
            "{}",
            f.message
        );
        assert!(check_endpoints(&["h:port".into()]).is_err());
    }
}
