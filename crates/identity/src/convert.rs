//! Between the contract's messages and the domain's and store's types, in one place: the handlers
//! and the match parameters at start-up both convert here.

use carerecord_contracts::identity::v1::{
    ComparisonLevel, FieldEvidence, FieldParameters, LevelParameters, MatchClassification,
    MatchParameters, MatchParametersOrigin, PatientVersion, WatchPatientChangesResponse,
};

use crate::domain::field::{FIELD_COUNT, FIELDS, Field, Level};
use crate::domain::model::{self, Classification, Model};
use crate::domain::patient::timestamp;
use crate::domain::score::FieldScore;
use crate::store::feed::VersionRow;

pub fn level_to_proto(level: Level) -> ComparisonLevel {
    match level {
        Level::Exact => ComparisonLevel::Exact,
        Level::Partial => ComparisonLevel::Partial,
        Level::Disagree => ComparisonLevel::Disagree,
        Level::Missing => ComparisonLevel::Missing,
    }
}

/// The level a stored `LevelParameters.level` names; `None` for missing or unknown levels, which
/// carry no parameters.
fn level_from_proto(level: i32) -> Option<Level> {
    match ComparisonLevel::try_from(level) {
        Ok(ComparisonLevel::Exact) => Some(Level::Exact),
        Ok(ComparisonLevel::Partial) => Some(Level::Partial),
        Ok(ComparisonLevel::Disagree) => Some(Level::Disagree),
        _ => None,
    }
}

pub fn classification_to_proto(c: Classification) -> MatchClassification {
    match c {
        Classification::Match => MatchClassification::Match,
        Classification::Possible => MatchClassification::Possible,
        Classification::NonMatch => MatchClassification::NonMatch,
    }
}

/// The model of stored parameters; fields it does not name weigh nothing.
pub fn model_of(params: &MatchParameters) -> Model {
    let mut m = [[0.5; 3]; FIELD_COUNT];
    let mut u = [[0.5; 3]; FIELD_COUNT];
    for fp in &params.fields {
        let Some(field) = Field::from_name(&fp.field) else {
            continue;
        };
        for lp in &fp.levels {
            let Some(level) = level_from_proto(lp.level) else {
                continue;
            };
            m[field.index()][level.index()] = lp.m_probability;
            u[field.index()][level.index()] = lp.u_probability;
        }
    }
    Model {
        m,
        u,
        lambda: params.prior_match_probability,
        match_threshold: params.match_threshold,
        possible_threshold: params.possible_threshold,
        households: !params.households_absent,
    }
}

/// Every field's parameters, from its (m, u) at each of its levels.
pub fn field_parameters(m_u: impl Fn(Field, Level) -> (f64, f64)) -> Vec<FieldParameters> {
    FIELDS
        .iter()
        .map(|&field| FieldParameters {
            field: field.name().to_owned(),
            levels: field
                .levels()
                .iter()
                .map(|&level| {
                    let (m, u) = m_u(field, level);
                    LevelParameters {
                        level: level_to_proto(level) as i32,
                        comparator: field.rule(level).to_owned(),
                        m_probability: m,
                        u_probability: u,
                        weight: (m / u).log2(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The parameters an empty index starts with (origin CONFIGURED), with the configured thresholds.
pub fn starting_parameters(match_threshold: f64, possible_threshold: f64) -> MatchParameters {
    MatchParameters {
        parameters_version: 0,
        origin: MatchParametersOrigin::Configured as i32,
        current: false,
        fields: field_parameters(|field, level| {
            let (m, u) = model::starting_values(field);
            let i = field.levels().iter().position(|&l| l == level).unwrap_or(0);
            (m[i], u[i])
        }),
        prior_match_probability: model::STARTING_PRIOR,
        match_threshold,
        possible_threshold,
        ..Default::default()
    }
}

/// A candidate's evidence: each field's comparison, level weight and weight.
pub fn evidence(scores: Vec<FieldScore>) -> Vec<FieldEvidence> {
    scores
        .into_iter()
        .map(|s| {
            let c = s.comparison;
            FieldEvidence {
                field: c.field.name().to_owned(),
                level: level_to_proto(c.level) as i32,
                comparator: c.comparator.to_owned(),
                similarity: c.similarity,
                weight: s.weight,
                probe_value: c.probe_value,
                candidate_value: c.candidate_value,
                level_weight: s.level_weight,
                adjustment: s.adjustment.name().to_owned(),
            }
        })
        .collect()
}

pub fn version_to_proto(row: VersionRow) -> PatientVersion {
    PatientVersion {
        version: row.patient.version,
        change_type: row.change_type as i32,
        changed_fields: Some(prost_types::FieldMask {
            paths: row.changed_fields,
        }),
        requester: Some(row.requester),
        reason: row.reason,
        related_patient_id: row.related_patient_id,
        change_time: Some(timestamp(row.change_time)),
        patient: Some(row.patient),
    }
}

/// A change-feed event, resumable after it with `cursor`.
pub fn feed_event(row: VersionRow, cursor: String) -> WatchPatientChangesResponse {
    WatchPatientChangesResponse {
        sequence: row.seq,
        cursor,
        change_type: row.change_type as i32,
        patient_id: row.patient.patient_id.clone(),
        related_patient_id: row.related_patient_id,
        version: row.patient.version,
        change_time: Some(timestamp(row.change_time)),
        patient: Some(row.patient),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::Pattern;

    /// The starting parameters with the default thresholds.
    fn defaults() -> MatchParameters {
        let settings =
            crate::Settings::from_env(&carerecord_platform::env::Env::from_pairs::<&str, &str>([]))
                .expect("defaults");
        starting_parameters(settings.match_threshold, settings.possible_threshold)
    }

    fn classify(agreeing: &[(Field, Level)]) -> Classification {
        let model = model_of(&defaults());
        let mut levels = [Level::Missing; FIELD_COUNT];
        for (field, level) in agreeing {
            levels[field.index()] = *level;
        }
        let weight = model.pattern_weight(Pattern::from_levels(&levels));
        model.classify(model.probability(weight))
    }

    #[test]
    fn starting_parameters_are_probabilities_for_every_level() {
        let params = defaults();
        assert_eq!(params.origin, MatchParametersOrigin::Configured as i32);
        assert_eq!(params.fields.len(), FIELD_COUNT);
        for (fp, field) in params.fields.iter().zip(FIELDS) {
            assert_eq!(fp.levels.len(), field.levels().len(), "{}", fp.field);
            let m: f64 = fp.levels.iter().map(|l| l.m_probability).sum();
            let u: f64 = fp.levels.iter().map(|l| l.u_probability).sum();
            assert!(
                (m - 1.0).abs() < 1e-9 && (u - 1.0).abs() < 1e-9,
                "{}",
                fp.field
            );
            for l in &fp.levels {
                assert!((l.weight - (l.m_probability / l.u_probability).log2()).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn starting_parameters_classify_sensibly() {
        use Field::*;
        use Level::*;
        // A national identifier alone is evidence, not proof.
        assert_ne!(classify(&[(NhsNumber, Exact)]), Classification::Match);
        assert_eq!(
            classify(&[(NhsNumber, Exact), (BirthDate, Exact)]),
            Classification::Match
        );
        assert_eq!(
            classify(&[
                (GivenName, Exact),
                (FamilyName, Exact),
                (BirthDate, Exact),
                (Gender, Exact)
            ]),
            Classification::Match
        );
        // Same name, different birth date: different people.
        assert_eq!(
            classify(&[
                (GivenName, Exact),
                (FamilyName, Exact),
                (BirthDate, Disagree)
            ]),
            Classification::NonMatch
        );
        // Names agree, birth date only nearly (a typo or a day/month swap): for a person to review.
        assert_eq!(
            classify(&[
                (GivenName, Exact),
                (FamilyName, Exact),
                (BirthDate, Partial)
            ]),
            Classification::Possible
        );
    }
}
