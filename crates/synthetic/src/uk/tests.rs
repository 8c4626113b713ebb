use super::*;

#[test]
fn populations_are_reproducible_and_realistic() {
    let config = Config::development(6_000);
    let a = generate(DEVELOPMENT_SEED, &config);
    let b = generate(DEVELOPMENT_SEED, &config);
    assert_eq!(a.index.len(), b.index.len());
    assert!(
        a.probes
            .iter()
            .zip(&b.probes)
            .all(|(x, y)| x.patient == y.patient)
    );
    let c = generate(HELD_OUT_SEED, &Config::held_out(6_000));
    assert_ne!(a.index[0].patient, c.index[0].patient);

    let share = |n: usize, of: usize| n as f64 / of.max(1) as f64;
    let smith = a.people.iter().filter(|p| p.family == "Smith").count();
    assert!(
        (0.004..0.02).contains(&share(smith, a.people.len())),
        "{smith} Smiths"
    );
    let twins = a.people.iter().filter(|p| p.twin.is_some()).count();
    assert!(twins > 20, "{twins} twins");
    for (i, p) in a.people.iter().enumerate() {
        if let Some(t) = p.twin {
            let t = &a.people[t];
            assert_eq!((t.twin, t.birth, &t.home), (Some(i), p.birth, &p.home));
            assert_ne!(t.given, p.given);
        }
    }
    let probes = &a.probes;
    let count = |f: fn(&Tags) -> bool| probes.iter().filter(|r| f(&r.tags)).count();
    assert!(count(|t| t.moved) > probes.len() / 6, "moves");
    assert!(count(|t| t.married) > 5, "marriages");
    assert!(count(|t| t.nickname) > 5, "nicknames");
    assert!(count(|t| t.new_patient) > 20, "new patients");
    assert!(count(|t| t.twin) > 10, "twin probes");
    assert!(count(|t| t.common_name) > 3, "common names");
    // Every probe of a registered person has that person's record in the index.
    for r in probes {
        assert_eq!(a.index_of[r.person].is_some(), !r.tags.new_patient);
    }
    // NHS numbers in the index are unique.
    let mut numbers: Vec<&str> = a
        .index
        .iter()
        .map(|r| r.patient.nhs_number.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    let n = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), n);
}
