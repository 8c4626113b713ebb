//! Configuration variables: where a service's settings come from, and the error that names a bad one.
//!
//! Values are read through an [`Env`] so tests can supply them without touching the process
//! environment.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// A configuration value that could not be used. The message names the variable and the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name} is required but not set")]
    Missing { name: String },
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(name: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A source of configuration variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// A fixed set of variables, for tests and embedding.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets `name` unless it already has a value (for embedding: defaults under the caller's settings).
    pub fn set_default(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.vars.insert(name.to_owned(), value.to_owned());
        }
    }

    /// The value of `name`, treating an empty or blank value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    /// Parses `name` with `FromStr`, or returns `default` when unset.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e: T::Err| ConfigError::invalid(name, raw, e.to_string())),
        }
    }

    /// A duration such as `250ms`, `30s`, `5m` or `1h`; a bare number is seconds.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => {
                parse_duration(raw).map_err(|reason| ConfigError::invalid(name, raw, reason))
            }
        }
    }

    /// A byte size such as `4194304`, `512KiB`, `4MiB` or `1GiB`.
    pub fn bytes_or(&self, name: &str, default: usize) -> Result<usize, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse_bytes(raw).map_err(|reason| ConfigError::invalid(name, raw, reason)),
        }
    }

    /// An `http://` or `https://` URL, or `None` when unset.
    pub fn url(&self, name: &str) -> Result<Option<&str>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) if raw.starts_with("https://") || raw.starts_with("http://") => Ok(Some(raw)),
            Some(raw) => Err(ConfigError::invalid(
                name,
                raw,
                "expected an http(s):// URL",
            )),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::invalid(name, raw, "expected true or false")),
            },
        }
    }
}

/// `raw` as a whole number and the unit after it; `expected` says what was expected otherwise.
fn amount_and_unit<'a, T: FromStr>(raw: &'a str, expected: &str) -> Result<(T, &'a str), String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let amount = digits.parse().map_err(|_| expected.to_owned())?;
    Ok((amount, unit.trim()))
}

pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (amount, unit): (u64, _) =
        amount_and_unit(raw, "expected a whole number followed by ms, s, m or h")?;
    let duration = match unit {
        "ms" => Duration::from_millis(amount),
        "" | "s" => Duration::from_secs(amount),
        "m" => Duration::from_secs(amount.saturating_mul(60)),
        "h" => Duration::from_secs(amount.saturating_mul(3600)),
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    Ok(duration)
}

pub fn parse_bytes(raw: &str) -> Result<usize, String> {
    let (amount, unit): (usize, _) = amount_and_unit(
        raw,
        "expected a whole number optionally followed by KiB, MiB or GiB",
    )?;
    let factor: usize = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    amount
        .checked_mul(factor)
        .ok_or_else(|| "too large".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_reject_garbage() {
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-3s").is_err());
        assert_eq!(parse_bytes("512KiB").unwrap(), 512 * 1024);
        assert!(parse_bytes("12 parsecs").is_err());
        let env = Env::from_pairs([("FLAG", "maybe"), ("SITE", "https://a.example/")]);
        assert!(env.bool_or("FLAG", false).is_err());
        assert_eq!(env.url("SITE").unwrap(), Some("https://a.example/"));
        assert!(env.url("FLAG").is_err());
        assert_eq!(env.url("ABSENT").unwrap(), None);
        assert_eq!(
            env.require("ABSENT").unwrap_err(),
            ConfigError::Missing {
                name: "ABSENT".into()
            }
        );
    }
}
