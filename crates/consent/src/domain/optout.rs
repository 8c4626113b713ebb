//! The national data opt-out: the patient's status as a dated check ([`OptOutStatus`]), and what the
//! patient's directives say as far as the opt-out is concerned. Its exemptions are platform
//! policies (`@kind("optout-exemption")`, see policy/default.cedar) that an ICS can change; they see
//! the request and, of the patient, only what [`PatientConsent`] says, so their verdicts are
//! evaluated once per request context for each of its three values and the per-patient step is a
//! lookup.

/// Microseconds in a day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// How long a national data opt-out check stays valid: the deployment's choice
/// (`CARERECORD_CONSENT_OPT_OUT_VALIDITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckValidity {
    micros: i64,
}

impl CheckValidity {
    /// Unless the deployment says otherwise: a monthly check.
    pub const DEFAULT: CheckValidity = CheckValidity {
        micros: 30 * MICROS_PER_DAY,
    };
    /// The longest validity accepted: a result kept longer is no longer a temporary check.
    pub const MAX_DAYS: i64 = 366;

    /// A validity of `micros`, if it is at least a second and at most [`Self::MAX_DAYS`] days.
    pub fn from_micros(micros: i64) -> Option<CheckValidity> {
        (1_000_000..=Self::MAX_DAYS * MICROS_PER_DAY)
            .contains(&micros)
            .then_some(CheckValidity { micros })
    }

    /// A validity written as a whole number and a unit: `d` (days), `h`, `m`, `s` or `ms`.
    pub fn parse(raw: &str) -> Result<CheckValidity, String> {
        let raw = raw.trim();
        let micros = match raw.strip_suffix('d') {
            Some(days) => days
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|d| d.checked_mul(MICROS_PER_DAY))
                .ok_or_else(|| "expected a whole number of days such as 30d".to_owned())?,
            None => {
                let duration = carerecord_platform::env::parse_duration(raw)?;
                i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
            }
        };
        CheckValidity::from_micros(micros).ok_or_else(|| {
            format!(
                "must be between 1 second and {} days",
                CheckValidity::MAX_DAYS
            )
        })
    }

    pub fn as_micros(self) -> i64 {
        self.micros
    }

    /// When a check made at `check_time` (microseconds) stops being valid.
    pub fn expiry(self, check_time: i64) -> i64 {
        check_time.saturating_add(self.micros)
    }

    /// Whether a check made at `check_time` is still valid at `now` (microseconds).
    pub fn holds(self, check_time: i64, now: i64) -> bool {
        check_time > 0 && now < self.expiry(check_time)
    }
}

impl std::fmt::Display for CheckValidity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.micros / 1_000_000;
        match (self.micros % MICROS_PER_DAY, seconds % 3600) {
            (0, _) => write!(f, "{} days", self.micros / MICROS_PER_DAY),
            (_, 0) => write!(f, "{} hours", seconds / 3600),
            _ => write!(f, "{seconds} seconds"),
        }
    }
}

/// A recorded check: what it said, and when it was made (microseconds since the epoch, 0 for never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedCheck {
    pub opted_out: bool,
    pub check_time: i64,
}

/// The patient's national data opt-out status when a decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptOutStatus {
    /// A valid check says the patient has not opted out.
    NotOptedOut,
    /// A valid check says the patient has opted out.
    OptedOut,
    /// Unknown: the patient was never checked.
    NeverChecked,
    /// Unknown: the latest check is older than the validity period.
    CheckExpired,
}

impl OptOutStatus {
    /// The status of a patient whose latest check is `check` (if any), at `now` (microseconds).
    pub fn at(check: Option<RecordedCheck>, now: i64, validity: CheckValidity) -> OptOutStatus {
        match check {
            None => OptOutStatus::NeverChecked,
            Some(c) if c.check_time <= 0 => OptOutStatus::NeverChecked,
            Some(c) if !validity.holds(c.check_time, now) => OptOutStatus::CheckExpired,
            Some(c) if c.opted_out => OptOutStatus::OptedOut,
            Some(_) => OptOutStatus::NotOptedOut,
        }
    }

    /// Whether the opt-out applies where no exemption sets it aside: opted out, or not known not to
    /// be (fail closed).
    pub fn withholds(self) -> bool {
        self != OptOutStatus::NotOptedOut
    }

    pub fn is_unknown(self) -> bool {
        matches!(
            self,
            OptOutStatus::NeverChecked | OptOutStatus::CheckExpired
        )
    }
}

/// What the patient's directives yield for a cell, as far as the opt-out is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectiveVerdict {
    Deny,
    ExplicitPermit { study_specific: bool },
    NoObjection,
}

/// The patient's consent as the exemption rules see it (Cedar context attributes
/// `patient_explicit_consent` and `patient_study_consent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientConsent {
    /// The directives deny the cell or do not speak to the purpose.
    NotGiven,
    /// The directives yield an explicit PERMIT for the cell.
    Explicit,
    /// An explicit PERMIT that also names the request's study.
    StudySpecific,
}

/// How many [`PatientConsent`] values there are: the exemption verdicts cached per cell class.
pub const PATIENT_CONSENT_COUNT: usize = 3;

impl PatientConsent {
    pub const ALL: [PatientConsent; PATIENT_CONSENT_COUNT] = [
        PatientConsent::NotGiven,
        PatientConsent::Explicit,
        PatientConsent::StudySpecific,
    ];

    pub fn of(verdict: DirectiveVerdict) -> PatientConsent {
        match verdict {
            DirectiveVerdict::Deny | DirectiveVerdict::NoObjection => PatientConsent::NotGiven,
            DirectiveVerdict::ExplicitPermit {
                study_specific: false,
            } => PatientConsent::Explicit,
            DirectiveVerdict::ExplicitPermit {
                study_specific: true,
            } => PatientConsent::StudySpecific,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// `context.patient_explicit_consent`.
    pub fn explicit(self) -> bool {
        self != PatientConsent::NotGiven
    }

    /// `context.patient_study_consent`.
    pub fn study_specific(self) -> bool {
        self == PatientConsent::StudySpecific
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_holds_for_its_validity_then_the_status_is_unknown() {
        let validity = CheckValidity::parse("30d").unwrap();
        assert_eq!(validity, CheckValidity::DEFAULT);
        let checked = 1_700_000_000_000_000;
        let check = |opted_out| {
            Some(RecordedCheck {
                opted_out,
                check_time: checked,
            })
        };
        let day = MICROS_PER_DAY;
        let cases = [
            (None, checked, OptOutStatus::NeverChecked),
            (check(false), checked, OptOutStatus::NotOptedOut),
            (check(true), checked + 29 * day, OptOutStatus::OptedOut),
            (
                check(false),
                checked + 30 * day - 1,
                OptOutStatus::NotOptedOut,
            ),
            (check(false), checked + 30 * day, OptOutStatus::CheckExpired),
            (check(true), checked + 31 * day, OptOutStatus::CheckExpired),
            (
                Some(RecordedCheck {
                    opted_out: false,
                    check_time: 0,
                }),
                checked,
                OptOutStatus::NeverChecked,
            ),
        ];
        for (recorded, now, expected) in cases {
            let status = OptOutStatus::at(recorded, now, validity);
            assert_eq!(status, expected, "{recorded:?} at {now}");
            assert_eq!(status.withholds(), expected != OptOutStatus::NotOptedOut);
        }
    }

    #[test]
    fn validities_are_parsed_with_units_and_bounded() {
        assert_eq!(
            CheckValidity::parse("720h").unwrap(),
            CheckValidity::DEFAULT
        );
        assert_eq!(CheckValidity::parse("2s").unwrap().as_micros(), 2_000_000);
        for bad in ["0d", "367d", "500ms", "thirty days", "-1d", ""] {
            assert!(CheckValidity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(CheckValidity::DEFAULT.to_string(), "30 days");
        assert_eq!(CheckValidity::parse("36h").unwrap().to_string(), "36 hours");
        assert_eq!(
            CheckValidity::parse("90s").unwrap().to_string(),
            "90 seconds"
        );
    }

    #[test]
    fn directive_verdicts_map_to_the_attributes_exemption_rules_see() {
        let cases = [
            (DirectiveVerdict::Deny, false, false),
            (DirectiveVerdict::NoObjection, false, false),
            (
                DirectiveVerdict::ExplicitPermit {
                    study_specific: false,
                },
                true,
                false,
            ),
            (
                DirectiveVerdict::ExplicitPermit {
                    study_specific: true,
                },
                true,
                true,
            ),
        ];
        for (verdict, explicit, study) in cases {
            let consent = PatientConsent::of(verdict);
            assert_eq!(
                (consent.explicit(), consent.study_specific()),
                (explicit, study),
                "{verdict:?}"
            );
            assert_eq!(PatientConsent::ALL[consent.index()], consent);
        }
    }
}
