//! Record hosting's own settings, read from the environment.

use std::time::Duration;

use carerecord_platform::env::{ConfigError, Env};

use crate::domain::payload::PayloadRules;
use crate::domain::record::RecordRules;
use crate::domain::resource_types;

/// Record hosting's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsConfig {
    /// `CARERECORD_RECORDS_MAX_PAYLOAD_BYTES` (64KiB to 3MiB, default 1MiB), the
    /// `CARERECORD_RECORDS_FHIR_BASE_URLS` under which `<base>/Patient/<id>` references are
    /// accepted, and the `CARERECORD_RECORDS_RESOURCE_TYPES` allow-list (unset: every R4 type).
    pub rules: RecordRules,
    /// `CARERECORD_RECORDS_WATCH_POLL_INTERVAL`: how often change feed watchers look for writes
    /// committed by other replicas (this replica's own writes wake them at once).
    pub watch_poll_interval: Duration,
    /// `CARERECORD_RECORDS_WATCH_HEARTBEAT`: the longest a watch stream stays silent (at most 60s).
    pub watch_heartbeat: Duration,
}

impl RecordsConfig {
    pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        const PAYLOAD: &str = "CARERECORD_RECORDS_MAX_PAYLOAD_BYTES";
        let max_bytes = env.bytes_or(PAYLOAD, Self::DEFAULT_MAX_PAYLOAD_BYTES)?;
        if !(64 << 10..=3 << 20).contains(&max_bytes) {
            return Err(ConfigError::invalid(
                PAYLOAD,
                env.get(PAYLOAD).unwrap_or_default(),
                "must be from 64KiB to 3MiB",
            ));
        }
        let list = |name: &str| -> Vec<String> {
            env.get(name)
                .map(|raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let fhir_base_urls: Vec<String> = list("CARERECORD_RECORDS_FHIR_BASE_URLS")
            .into_iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect();
        for url in &fhir_base_urls {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::invalid(
                    "CARERECORD_RECORDS_FHIR_BASE_URLS",
                    url,
                    "each base URL must start with https:// or http://",
                ));
            }
        }
        let allowed = list("CARERECORD_RECORDS_RESOURCE_TYPES");
        for name in &allowed {
            if let Some(reason) = resource_types::refusal(name) {
                return Err(ConfigError::invalid(
                    "CARERECORD_RECORDS_RESOURCE_TYPES",
                    name,
                    reason,
                ));
            }
        }
        let watch_heartbeat = env.duration_or(
            "CARERECORD_RECORDS_WATCH_HEARTBEAT",
            Duration::from_secs(30),
        )?;
        if watch_heartbeat.is_zero() || watch_heartbeat > Duration::from_secs(60) {
            return Err(ConfigError::invalid(
                "CARERECORD_RECORDS_WATCH_HEARTBEAT",
                env.get("CARERECORD_RECORDS_WATCH_HEARTBEAT")
                    .unwrap_or_default(),
                "must be more than 0 and at most 60s (the contract promises a message at least every 60 seconds)",
            ));
        }
        Ok(RecordsConfig {
            rules: RecordRules {
                payload: PayloadRules {
                    max_bytes,
                    fhir_base_urls,
                },
                allowed_resource_types: (!allowed.is_empty()).then_some(allowed),
            },
            watch_poll_interval: env.duration_or(
                "CARERECORD_RECORDS_WATCH_POLL_INTERVAL",
                Duration::from_millis(250),
            )?,
            watch_heartbeat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_settings_have_defaults_and_limits() {
        let config = RecordsConfig::from_env(&Env::default()).unwrap();
        assert_eq!(config.rules.payload.max_bytes, 1 << 20);
        assert_eq!(config.rules.allowed_resource_types, None);
        let env = Env::from_pairs([
            ("CARERECORD_RECORDS_MAX_PAYLOAD_BYTES", "64KiB"),
            (
                "CARERECORD_RECORDS_FHIR_BASE_URLS",
                "https://fhir.example.nhs.uk/R4/, https://b.example/fhir",
            ),
            ("CARERECORD_RECORDS_RESOURCE_TYPES", "Observation,Condition"),
        ]);
        let config = RecordsConfig::from_env(&env).unwrap();
        assert_eq!(
            config.rules.payload.fhir_base_urls,
            ["https://fhir.example.nhs.uk/R4", "https://b.example/fhir"]
        );
        assert_eq!(
            config.rules.allowed_resource_types.unwrap(),
            ["Observation", "Condition"]
        );
        for (name, value) in [
            ("CARERECORD_RECORDS_MAX_PAYLOAD_BYTES", "4MiB"),
            ("CARERECORD_RECORDS_MAX_PAYLOAD_BYTES", "1KiB"),
            ("CARERECORD_RECORDS_RESOURCE_TYPES", "Patient"),
            ("CARERECORD_RECORDS_FHIR_BASE_URLS", "fhir.example"),
            ("CARERECORD_RECORDS_WATCH_HEARTBEAT", "2m"),
        ] {
            let err = RecordsConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
