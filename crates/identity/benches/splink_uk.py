"""Splink on the same UK-like data as the identity bench: EM-trained, standard comparisons.

Usage: python splink_uk.py INDEX.csv PROBES.csv OUT.csv [THRESHOLD]

Links every probe to the index (link_only) and writes the pairs whose match probability is at
least THRESHOLD (default 0.95, identity's default match threshold) as `index_id,probe_id,p`.
Training follows Splink's documented workflow: the prior from deterministic rules, u from random
pairs, m by expectation maximisation over two blocking rules. Nothing here is tuned to the data.
"""

import csv
import sys
import time

from splink import DuckDBAPI, Linker, SettingsCreator, block_on
import splink.comparison_library as cl


def main() -> None:
    index_csv, probes_csv, out_csv = sys.argv[1:4]
    threshold = float(sys.argv[4]) if len(sys.argv) > 4 else 0.95
    started = time.time()
    db_api = DuckDBAPI()
    # Every column as text, as the CSV holds it (dates are compared as strings).
    con = db_api.duckdb_con
    for table, path in (("index_records", index_csv), ("probe_records", probes_csv)):
        con.execute(
            f"CREATE TABLE {table} AS SELECT * FROM read_csv(?, all_varchar = true)", [path]
        )
    index = db_api.register("index_records")
    probes = db_api.register("probe_records")
    settings = SettingsCreator(
        link_type="link_only",
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("family_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.ExactMatch("sex"),
            cl.PostcodeComparison("postcode"),
            cl.JaroWinklerAtThresholds("address", [0.95, 0.85]),
            cl.DamerauLevenshteinAtThresholds("nhs_number", [1]),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("nhs_number"),
            block_on("dob"),
            block_on("given_name", "family_name"),
            block_on("postcode", "given_name"),
            "l.family_name = r.family_name and substr(l.dob, 1, 4) = substr(r.dob, 1, 4)",
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([index, probes], settings, log_level=30)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("given_name", "family_name", "dob"), block_on("nhs_number")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    for rule in (block_on("dob"), block_on("given_name", "family_name")):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, record_sample_proportion=1.0
        )
    predictions = linker.inference.predict(threshold_match_probability=threshold)
    rows = predictions.as_record_list()
    with open(out_csv, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["index_id", "probe_id", "p"])
        for r in rows:
            a, b = str(r["unique_id_l"]), str(r["unique_id_r"])
            index_id, probe_id = (a, b) if a.startswith("i") else (b, a)
            out.writerow([index_id, probe_id, r["match_probability"]])
    print(f"splink: {len(rows)} pairs at p >= {threshold} in {time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
