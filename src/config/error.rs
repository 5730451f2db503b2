//! Configuration errors: every problem is collected, each naming where it came from (the
//! file, or the environment variable that overrode a key), the key path, the line when the
//! parser knows it, and the reason.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file path, or `environment ROLEGATE_X__Y` for an override.
    pub origin: String,
    /// Dotted key path with array indexes, e.g. `rule[2].grant`. Empty for whole-file errors.
    pub key: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.key, self.reason)
        }
    }
}

/// All the errors found in one configuration; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "configuration has {n} error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors while a configuration is converted, so that all of them are reported.
pub(crate) struct Errors<'a> {
    /// Given a key path, where its value came from: (file or env var, line if known).
    locate: &'a dyn Fn(&str) -> (String, Option<usize>),
    pub(crate) list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    pub(crate) fn new(locate: &'a dyn Fn(&str) -> (String, Option<usize>)) -> Self {
        Self {
            locate,
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let key = key.into();
        let (origin, line) = (self.locate)(&key);
        self.list.push(ConfigError {
            origin,
            key,
            line,
            reason: reason.into(),
        });
    }

    /// Records `Err` under `key` and turns it into `None`, so conversion can go on.
    pub(crate) fn check<T, E: fmt::Display>(
        &mut self,
        key: impl Into<String>,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(key, e.to_string());
                None
            }
        }
    }
}
