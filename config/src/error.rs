//! [`ConfigError`]: every way configuration can be wrong, each naming the field, where the
//! bad value came from, and how to fix it.

use std::fmt;
use std::path::PathBuf;

use crate::parse::Bad;
use crate::source::Origin;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or breaks a rule (boxed: it is the largest variant).
    #[error("{0}")]
    Invalid(Box<InvalidValue>),
    /// A required field no source set.
    #[error("{field}: required but not set; {fix}")]
    Missing { field: String, fix: String },
    /// A key in the TOML file that is not a field of this configuration.
    #[error("{path}: unknown key {key:?}; {fix}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        fix: String,
    },
    /// A command-line flag that is not a field of this configuration.
    #[error("unknown flag --{flag}; {fix}")]
    UnknownFlag { flag: String, fix: String },
    /// The file is not valid TOML.
    #[error("{path}: not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    /// The file could not be read.
    #[error("cannot read config file {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// A value that does not parse or breaks a rule. Displays as, for example,
/// `lease: "0s" from WARREN_LEASE must be greater than keepalive_reply_before_end (1s);
/// set a lease of at least 2s`. A value set in code has no "from" part; a default says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidValue {
    pub field: String,
    /// The value as written (or, if set in code, as formatted).
    pub value: String,
    pub origin: Origin,
    /// Completes "`<field>: <value> from <origin>` …", e.g. "must be at most 1m".
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.field, self.value)?;
        match &self.origin {
            Origin::Code => {}
            Origin::Default => write!(f, " (the default)")?,
            other => write!(f, " from {other}")?,
        }
        write!(f, " {}; {}", self.problem, self.fix)
    }
}

impl ConfigError {
    pub(crate) fn invalid(field: &str, value: String, origin: Origin, bad: Bad) -> Self {
        ConfigError::Invalid(Box::new(InvalidValue {
            field: field.to_owned(),
            value,
            origin,
            problem: bad.problem,
            fix: bad.fix,
        }))
    }

    /// The field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid(invalid) => Some(&invalid.field),
            ConfigError::Missing { field, .. } => Some(field),
            _ => None,
        }
    }
}
