//! Where configuration comes from ([`Sources`]) and how the layers stack:
//! defaults < TOML file < `WARREN_*` environment < command-line flags.
//!
//! Sources are plain data so tests pass a map: nothing here reads the process environment
//! unless asked to by [`Sources::process_env`], and nobody calls `std::env::set_var`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::ConfigError;
use crate::parse::Bad;

/// The raw inputs to a configuration load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// The TOML file, if one was given. Keys are field names.
    pub file: Option<ConfigFile>,
    /// The whole environment; only `WARREN_<FIELD>` variables are read, others ignored
    /// (the same environment feeds several configurations).
    pub env: HashMap<String, String>,
    /// Command-line flags in the order given, as `(field, value)`: `("lease", "12s")`.
    /// The field may be written with dashes and leading dashes (`--max-lease`); a later
    /// flag for the same field wins.
    pub flags: Vec<(String, String)>,
}

/// A TOML configuration file's contents and where they came from (for messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub contents: String,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file already read (tests, or a file embedded in another).
    pub fn with_file(mut self, path: impl Into<PathBuf>, contents: impl Into<String>) -> Self {
        self.file = Some(ConfigFile {
            path: path.into(),
            contents: contents.into(),
        });
        self
    }

    pub fn with_env(mut self, var: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(var.into(), value.into());
        self
    }

    pub fn with_flag(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.flags.push((field.into(), value.into()));
        self
    }

    /// Reads the TOML file at `path` into [`Sources::file`].
    pub fn read_file(mut self, path: &Path) -> Result<Self, ConfigError> {
        let contents = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        self.file = Some(ConfigFile {
            path: path.to_owned(),
            contents,
        });
        Ok(self)
    }

    /// The process's environment (variables whose name or value is not Unicode skipped),
    /// for `main` to put in [`Sources::env`].
    pub fn process_env() -> HashMap<String, String> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

/// Where a setting's value came from, named in error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag (as `--name`).
    Flag(String),
    /// Set directly on the struct by a program (then [`crate::CellConfig::validate`] cannot
    /// say more).
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("the default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => f.write_str(var),
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Code => f.write_str("the program"),
        }
    }
}

/// One field of a configuration, as the loader sees it.
pub(crate) struct FieldSpec {
    /// TOML key and flag name (flags may also use dashes).
    pub name: &'static str,
    /// The environment variable that sets it.
    pub env: &'static str,
    /// Other flag names accepted (e.g. `endpoint` for `endpoints`).
    pub flag_aliases: &'static [&'static str],
}

/// A value as written, before parsing, with its origin.
#[derive(Clone, Debug)]
pub(crate) struct Raw {
    pub value: String,
    pub origin: Origin,
}

/// The stacked sources for one configuration, checked for unknown keys and flags.
pub(crate) struct Layers {
    values: HashMap<&'static str, Raw>,
}

impl Layers {
    /// Stacks `sources` for the fields in `fields`, lowest precedence first so that later
    /// layers overwrite. Unknown file keys and unknown flags are errors.
    pub fn new(sources: &Sources, fields: &[FieldSpec]) -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        let known = || {
            let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            names.join(", ")
        };

        if let Some(file) = &sources.file {
            let table: toml::Table =
                file.contents
                    .parse()
                    .map_err(|e: toml::de::Error| ConfigError::Toml {
                        path: file.path.clone(),
                        message: e.to_string().trim_end().to_owned(),
                    })?;
            // A `[tls]` section holds the TLS files (docs/security.md) of a configuration
            // that has them: its keys stand for the top-level ones of the same name.
            let mut entries = Vec::new();
            for (key, value) in table {
                match value {
                    toml::Value::Table(section)
                        if key == "tls" && fields.iter().any(|f| f.name == "cacert") =>
                    {
                        for (k, v) in section {
                            if !crate::tls::SECTION_KEYS.contains(&k.as_str()) {
                                return Err(ConfigError::UnknownKey {
                                    path: file.path.clone(),
                                    key: format!("tls.{k}"),
                                    fix: format!(
                                        "the keys of [tls] are: {}",
                                        crate::tls::SECTION_KEYS.join(", ")
                                    ),
                                });
                            }
                            entries.push((k, v));
                        }
                    }
                    // A `[backup]` section (docs/backup.md): `dest`, `every`, `keep` stand
                    // for `backup_dest`, `backup_every`, `backup_keep`.
                    toml::Value::Table(section)
                        if key == "backup" && fields.iter().any(|f| f.name == "backup_dest") =>
                    {
                        for (k, v) in section {
                            if !["dest", "every", "keep"].contains(&k.as_str()) {
                                return Err(ConfigError::UnknownKey {
                                    path: file.path.clone(),
                                    key: format!("backup.{k}"),
                                    fix: "the keys of [backup] are: dest, every, keep".into(),
                                });
                            }
                            entries.push((format!("backup_{k}"), v));
                        }
                    }
                    value => entries.push((key, value)),
                }
            }
            for (key, value) in entries {
                let Some(spec) = fields.iter().find(|f| f.name == key) else {
                    let hint = match closest(&key, fields.iter().map(|f| f.name)) {
                        Some(near) => format!("did you mean {near:?}? "),
                        None => String::new(),
                    };
                    return Err(ConfigError::UnknownKey {
                        path: file.path.clone(),
                        fix: format!("{hint}the keys are: {}", known()),
                        key,
                    });
                };
                let origin = Origin::File(file.path.clone());
                let value = toml_to_string(&value).ok_or_else(|| {
                    ConfigError::invalid(
                        spec.name,
                        value.to_string(),
                        origin.clone(),
                        Bad {
                            problem: format!("is a TOML {}", value.type_str()),
                            fix: "write a string, a number or a list of strings".to_owned(),
                        },
                    )
                })?;
                values.insert(spec.name, Raw { value, origin });
            }
        }

        for spec in fields {
            if let Some(value) = sources.env.get(spec.env) {
                let origin = Origin::Env(spec.env.to_owned());
                values.insert(
                    spec.name,
                    Raw {
                        value: value.clone(),
                        origin,
                    },
                );
            }
        }

        for (flag, value) in &sources.flags {
            let name = flag.trim_start_matches('-').replace('-', "_");
            let Some(spec) = fields
                .iter()
                .find(|f| f.name == name || f.flag_aliases.contains(&name.as_str()))
            else {
                let hint = match closest(&name, fields.iter().map(|f| f.name)) {
                    Some(near) => format!("did you mean --{}? ", near.replace('_', "-")),
                    None => String::new(),
                };
                return Err(ConfigError::UnknownFlag {
                    flag: name.replace('_', "-"),
                    fix: format!("{hint}the settings are: {}", known()),
                });
            };
            let origin = Origin::Flag(format!("--{}", name.replace('_', "-")));
            values.insert(
                spec.name,
                Raw {
                    value: value.clone(),
                    origin,
                },
            );
        }
        Ok(Self { values })
    }

    /// The value of `field` from the highest layer that sets it.
    pub fn get(&self, field: &str) -> Option<&Raw> {
        self.values.get(field)
    }

    /// Parses `field` from the highest layer that sets it (`None` if none does); a value
    /// that does not parse is an error naming the field, the value and its origin.
    pub fn parse<T>(
        &self,
        field: &str,
        parse: impl Fn(&str) -> Result<T, Bad>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(raw) = self.get(field) else {
            return Ok(None);
        };
        parse(&raw.value)
            .map(Some)
            .map_err(|b| ConfigError::invalid(field, raw.value.clone(), raw.origin.clone(), b))
    }

    /// Sets each duration in `fields` that a layer gives (each `(field, where it goes)`);
    /// the others keep their values.
    pub fn set_durations<const N: usize>(
        &self,
        fields: [(&str, &mut std::time::Duration); N],
    ) -> Result<(), ConfigError> {
        for (field, slot) in fields {
            if let Some(v) = self.parse(field, crate::parse::duration)? {
                *slot = v;
            }
        }
        Ok(())
    }

    /// Where `field` came from (the default if no layer set it) and how it was written.
    pub fn provenance(&self, field: &str) -> (Origin, Option<String>) {
        match self.get(field) {
            Some(raw) => (raw.origin.clone(), Some(raw.value.clone())),
            None => (Origin::Default, None),
        }
    }
}

/// Where a field's value came from and, if a source wrote it, its text; used by the
/// validation rules to word their errors.
pub(crate) type Provenance<'a> = dyn Fn(&str) -> (Origin, Option<String>) + 'a;

/// For a rule between two fields, whether to name the second rather than the first: only
/// when the first is at its default and the second was set somewhere (the user changed the
/// second, so that is the value to fix).
pub(crate) fn blame_second(origin: impl Fn(&str) -> Origin, first: &str, second: &str) -> bool {
    origin(first) == Origin::Default && origin(second) != Origin::Default
}

/// A TOML scalar (or a list of strings, joined by commas) as the string the other sources
/// would give; `None` for tables, dates and mixed lists.
fn toml_to_string(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            Some(parts?.join(","))
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// The known name within edit distance 2 of `name`, for "did you mean" hints.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            row.push((prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1));
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("lease", "lease"), 0);
        assert_eq!(edit_distance("leese", "lease"), 1);
        assert_eq!(edit_distance("lese", "lease"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            closest("leese", ["lease", "listen"].into_iter()),
            Some("lease")
        );
        assert_eq!(closest("zzzzzz", ["lease", "listen"].into_iter()), None);
    }

    #[test]
    fn toml_values_become_strings() {
        let t: toml::Table = "a = \"x\"\nb = 5\nc = [\"h:1\", \"h:2\"]\nd = 0.5\ne = true\nf = {}"
            .parse()
            .unwrap();
        assert_eq!(toml_to_string(&t["a"]).as_deref(), Some("x"));
        assert_eq!(toml_to_string(&t["b"]).as_deref(), Some("5"));
        assert_eq!(toml_to_string(&t["c"]).as_deref(), Some("h:1,h:2"));
        assert_eq!(toml_to_string(&t["d"]).as_deref(), Some("0.5"));
        assert_eq!(toml_to_string(&t["e"]).as_deref(), Some("true"));
        assert_eq!(toml_to_string(&t["f"]), None);
    }
}
