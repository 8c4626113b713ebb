//! `carerecord consent opt-out-check`: the two files of a national data opt-out check (the NHS
//! numbers sent to the national service and those it returned), read and checked line by line, and
//! resolved to patients through identity.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use carerecord_contracts::common::v1::Identifier;
use carerecord_contracts::identity::v1::ResolveIdentifierRequest;
use carerecord_contracts::identity::v1::patient_identity_service_client::PatientIdentityServiceClient;
use carerecord_platform::request::Id;

use crate::patient::NHS_NUMBER_SYSTEM;

/// Patients per RecordNationalDataOptOutCheck call (the contract's maximum).
pub(super) const MAX_CHECKED_PER_CALL: usize = 10_000;
/// Per-line errors shown before the rest are counted.
const MAX_ERRORS_SHOWN: usize = 50;

/// `--checked-at`: an RFC 3339 time, or a date taken as its start (UTC).
pub(super) fn parse_check_time(raw: &str) -> Result<prost_types::Timestamp, String> {
    if let Ok(time) = raw.trim().parse::<prost_types::Timestamp>() {
        return Ok(time);
    }
    match carerecord_platform::time::fhir_range(raw.trim()) {
        Some((start, _)) if !raw.contains('T') => {
            Ok(carerecord_platform::time::timestamp_from_micros(start))
        }
        _ => Err(format!(
            "--checked-at {raw:?} is neither an RFC 3339 time (2026-11-30T09:15:00Z) nor a date (2026-11-30)"
        )),
    }
}

/// One value of a check file: an NHS number (ten digits) or a patient id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Checked {
    NhsNumber(String),
    PatientId(String),
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Checked::NhsNumber(n) => write!(f, "NHS number {n}"),
            Checked::PatientId(id) => write!(f, "patient {id}"),
        }
    }
}

/// The values of a check file, each with its line number, or one error per bad line.
fn parse_check_file(name: &str, text: &str) -> Result<Vec<(usize, Checked)>, Vec<String>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        for raw in line.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if let Some(id) = Id::parse(raw) {
                values.push((number, Checked::PatientId(id.into_string())));
                continue;
            }
            match carerecord_platform::nhs_number::normalise(raw) {
                Ok(nhs) => values.push((number, Checked::NhsNumber(nhs))),
                Err(e) => {
                    let shown: String = raw.chars().take(40).collect();
                    errors.push(format!(
                        "{name}:{number}: {shown:?} is neither an NHS number ({}) nor a patient id",
                        e.description()
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// Per-line errors as one message: the first ones, then how many more.
fn report_errors(mut errors: Vec<String>) -> String {
    let more = errors.len().saturating_sub(MAX_ERRORS_SHOWN);
    errors.truncate(MAX_ERRORS_SHOWN);
    let mut text = format!("nothing was recorded:\n  {}", errors.join("\n  "));
    if more > 0 {
        text.push_str(&format!("\n  … and {more} more"));
    }
    text
}

/// The two files of a national data opt-out check, read and checked line by line.
#[derive(Debug)]
pub(super) struct CheckFiles {
    sent_name: String,
    sent: Vec<(usize, Checked)>,
    returned: HashSet<Checked>,
}

impl CheckFiles {
    pub(super) fn read(sent: &Path, returned: &Path) -> Result<CheckFiles, String> {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        CheckFiles::parse(
            &sent.display().to_string(),
            &read(sent)?,
            &returned.display().to_string(),
            &read(returned)?,
        )
        .map_err(report_errors)
    }

    /// Both files' values; every returned value must have been sent.
    fn parse(
        sent_name: &str,
        sent: &str,
        returned_name: &str,
        returned: &str,
    ) -> Result<CheckFiles, Vec<String>> {
        let sent_values = parse_check_file(sent_name, sent);
        let returned_values = parse_check_file(returned_name, returned);
        let (sent, returned) = match (sent_values, returned_values) {
            (Ok(sent), Ok(returned)) => (sent, returned),
            (sent, returned) => {
                let mut errors = sent.err().unwrap_or_default();
                errors.extend(returned.err().unwrap_or_default());
                return Err(errors);
            }
        };
        if sent.is_empty() {
            return Err(vec![format!("{sent_name}: names no patient")]);
        }
        let sent_set: HashSet<&Checked> = sent.iter().map(|(_, v)| v).collect();
        let errors: Vec<String> = returned
            .iter()
            .filter(|(_, v)| !sent_set.contains(v))
            .map(|(line, v)| format!("{returned_name}:{line}: {v} was not in {sent_name}"))
            .collect();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CheckFiles {
            sent_name: sent_name.to_owned(),
            sent,
            returned: returned.into_iter().map(|(_, v)| v).collect(),
        })
    }

    /// Each checked patient once, with whether they have opted out: a patient is opted out when
    /// any of their sent values did not come back. NHS numbers are resolved through identity
    /// (following merges); one that resolves to no patient is a per-line error.
    pub(super) async fn resolve(
        &self,
        identity: &mut PatientIdentityServiceClient<tonic::transport::Channel>,
        failed: impl Fn(tonic::Status) -> String,
    ) -> Result<Vec<(String, bool)>, String> {
        let mut resolved: HashMap<&str, String> = HashMap::new();
        let mut errors = Vec::new();
        for (line, value) in &self.sent {
            let Checked::NhsNumber(nhs) = value else {
                continue;
            };
            if resolved.contains_key(nhs.as_str()) {
                continue;
            }
            let request = ResolveIdentifierRequest {
                identifier: Some(Identifier {
                    system: NHS_NUMBER_SYSTEM.into(),
                    value: nhs.clone(),
                }),
            };
            match identity.resolve_identifier(request).await {
                Ok(response) => {
                    resolved.insert(nhs, response.into_inner().patient_id);
                }
                Err(s) if s.code() == tonic::Code::NotFound => errors.push(format!(
                    "{}:{line}: NHS number {nhs} is not registered with identity",
                    self.sent_name
                )),
                Err(s) => return Err(failed(s)),
            }
        }
        if !errors.is_empty() {
            return Err(report_errors(errors));
        }
        let mut patients: Vec<(String, bool)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (_, value) in &self.sent {
            let patient_id = match value {
                Checked::NhsNumber(nhs) => resolved[nhs.as_str()].clone(),
                Checked::PatientId(id) => id.clone(),
            };
            let opted_out = !self.returned.contains(value);
            match index.get(&patient_id) {
                Some(&i) => patients[i].1 |= opted_out,
                None => {
                    index.insert(patient_id.clone(), patients.len());
                    patients.push((patient_id, opted_out));
                }
            }
        }
        Ok(patients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_files_are_read_line_by_line_with_an_error_per_bad_line() {
        let sent = "9434765919,\n999 000 0018\n\n0b9d6f3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b\n";
        let files = CheckFiles::parse("sent.dat", sent, "returned.dat", "9434765919,\n").unwrap();
        assert_eq!(files.sent.len(), 3);
        assert_eq!(files.sent[1], (2, Checked::NhsNumber("9990000018".into())));
        assert!(
            files
                .returned
                .contains(&Checked::NhsNumber("9434765919".into()))
        );

        let errors = CheckFiles::parse(
            "sent.dat",
            "9434765919\n9434765918\nnot a number, 943 476 5919\n",
            "returned.dat",
            "9434765919\n",
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("sent.dat:2: ") && errors[0].contains("modulus-11"));
        assert!(errors[1].starts_with("sent.dat:3: "));

        let errors =
            CheckFiles::parse("sent.dat", "9434765919\n", "returned.dat", "\n9990000018\n")
                .unwrap_err();
        assert_eq!(
            errors,
            ["returned.dat:2: NHS number 9990000018 was not in sent.dat"]
        );
        assert!(CheckFiles::parse("sent.dat", "\n", "returned.dat", "").is_err());
        let many: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
        assert!(report_errors(many).ends_with("… and 10 more"));
    }

    #[test]
    fn check_times_are_rfc3339_or_a_date() {
        assert_eq!(
            parse_check_time("2026-11-30T09:15:00Z").unwrap().seconds,
            parse_check_time("2026-11-30").unwrap().seconds + 9 * 3600 + 15 * 60
        );
        assert!(parse_check_time("30/11/2026").is_err());
    }
}
