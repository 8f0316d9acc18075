#!/usr/bin/env python3
"""Splink (4.x, DuckDB) on the people of a `c360 export`, for comparison with `c360 dedupe`.

Usage: bench/splink.py PROFILES.csv OUT_PAIRS.csv [--threshold 0.01] [--max-pairs-u 1e6]
                       [--recall 0.7] [--quiet]

PROFILES.csv is `c360 export --format csv` (CSV columns of README.md; only
PERSON rows are matched); OUT_PAIRS.csv gets left_profile_id,
right_profile_id, probability for every pair Splink scores at or above
--threshold: the columns bench/accuracy.py reads, so
`bench/accuracy.py TRUTH.csv OUT_PAIRS.csv` scores Splink as it scores
`c360 dedupe --export-pairs`. bench/splink.sh runs this in a virtualenv of
its own with the versions it was tried with.

The model follows Splink's documented deduplication example (historical
persons) and is trained the way it trains, without labels: the
chance that two random records match from deterministic rules and a recall
guess (--recall), u from random pairs (--max-pairs-u), m by expectation
maximisation in two sessions blocked on different columns so that every
comparison is estimated in at least one. Prints each phase's wall time and
the pairs written to standard error.
"""

import argparse
import json
import logging
import os
import re
import sys
import time

# This file is itself named splink.py, and Python puts its folder first on
# the import path: drop that entry so `import splink` finds the package.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

try:
    import duckdb
    import splink
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on
except ImportError as error:
    sys.exit(f"{error}: run bench/splink.sh, which installs splink into a virtualenv")

# The export's columns this reads (the rest are carried along unread).
NEEDED = ["id", "kind", "given_name", "family_name", "birth_date", "email", "emails",
          "phone", "phones", "address_line1", "city", "postcode"]


def main() -> None:
    parser = argparse.ArgumentParser(description="Splink deduplication of a c360 export")
    parser.add_argument("profiles", help="CSV written by `c360 export --format csv`")
    parser.add_argument("pairs", help="CSV to write: left_profile_id,right_profile_id,probability")
    parser.add_argument("--threshold", type=float, default=0.01,
                        help="lowest match probability written (like `--export-from` of c360 dedupe)")
    parser.add_argument("--max-pairs-u", type=float, default=1e6,
                        help="random pairs for the u estimates (Splink suggests 1e7 to 1e9 for real runs)")
    parser.add_argument("--recall", type=float, default=0.7,
                        help="guessed recall of the deterministic rules that estimate the prior")
    parser.add_argument("--quiet", action="store_true", help="hide Splink's own log but for errors")
    args = parser.parse_args()
    if not splink.__version__.startswith("4."):
        print(f"warning: written for Splink 4.x, this is {splink.__version__}", file=sys.stderr)

    started = time.perf_counter()
    phase = started

    def lap(name: str) -> None:
        nonlocal phase
        now = time.perf_counter()
        print(f"splink: {name} {now - phase:.1f} s", file=sys.stderr)
        phase = now

    con = duckdb.connect()
    people = load(con, args.profiles)
    lap(f"load ({people} people)")

    linker = Linker("people", settings(), db_api=DuckDBAPI(connection=con))
    # Linker() turns Splink's log on at INFO (estimates, EM iterations,
    # levels never seen in training); --quiet keeps only its errors.
    if args.quiet:
        logging.getLogger("splink").setLevel(logging.ERROR)
    train(linker, args.recall, args.max_pairs_u)
    lap("training")

    predictions = linker.inference.predict(threshold_match_probability=args.threshold)
    lap("predict")

    written = write(con, predictions.physical_name, args.pairs)
    lap(f"write ({written} pairs)")
    print(f"splink: total {time.perf_counter() - started:.1f} s, {written} pairs at or above "
          f"{args.threshold} written to {args.pairs} (splink {splink.__version__}, duckdb {duckdb.__version__})",
          file=sys.stderr)


def load(con: "duckdb.DuckDBPyConnection", path: str) -> int:
    """Reads the export's PERSON rows into table `people` with Splink's column names; how many.

    Cleaned the way Splink's docs ask for (trimmed, lower case, empty as
    NULL) so that a difference of case or spacing is not a difference to
    Splink: c360's matcher folds these too, and the seed's duplicates
    include upper-cased family names.
    """
    # All text: ids, postcodes and phones must not turn into numbers, and the
    # export's JSON columns hold commas and doubled quotes (RFC 4180).
    raw = con.read_csv(path, header=True, all_varchar=True, sep=",", quotechar='"', escapechar='"')
    missing = [c for c in NEEDED if c not in raw.columns]
    if missing:
        sys.exit(f"{path}: not a `c360 export` CSV, it lacks {', '.join(missing)}")
    raw.create_view("export_raw")
    con.create_function("first_item", first_item, ["VARCHAR"], "VARCHAR")
    con.create_function("held", held, ["VARCHAR", "VARCHAR"], "VARCHAR", null_handling="special")
    # Exports before held_identifiers existed lack the column.
    held_column = "held_identifiers" if "held_identifiers" in raw.columns else "NULL"
    con.execute(f"""
        CREATE MACRO present(x) AS nullif(trim(x), '');
        CREATE MACRO folded(x) AS nullif(lower(strip_accents(trim(regexp_replace(x, '\\s+', ' ', 'g')))), '');
        CREATE TABLE people AS
        SELECT
            id AS unique_id,
            folded(given_name) AS first_name,
            folded(family_name) AS surname,
            -- Term frequencies of the whole name, as in Splink's historical persons example.
            folded(given_name) || ' ' || folded(family_name) AS first_name_surname_concat,
            present(birth_date) AS dob,
            -- The email and phone a record gave that another profile holds
            -- (held_identifiers, which c360 dedupe compares too), else the
            -- primary, else the first of the lists.
            lower(coalesce(held({held_column}, 'email'), present(email), first_item(present(emails)))) AS email,
            nullif(regexp_replace(coalesce(held({held_column}, 'phone'), present(phone),
                                           first_item(present(phones))), '[^0-9+]', '', 'g'), '') AS phone,
            folded(address_line1) AS address,
            folded(city) AS city,
            nullif(upper(trim(regexp_replace(postcode, '\\s+', ' ', 'g'))), '') AS postcode
        FROM export_raw
        WHERE upper(trim(kind)) = 'PERSON'
    """)
    return con.execute("SELECT count(*) FROM people").fetchall()[0][0]


def held(raw: "str | None", kind: str) -> "str | None":
    """The first identifier of `kind` in an export's held_identifiers (`EMAIL:…; PHONE:…`)."""
    for part in (raw or "").split(";"):
        found, _, value = part.strip().partition(":")
        if found.strip().lower() == kind and value.strip():
            return value.strip()
    return None


def first_item(raw: str) -> "str | None":
    """The first entry of an export list column: a JSON array (of strings, or
    of objects with address/number/value) or text split on ';' or '|' (the
    export joins with '; ')."""
    raw = raw.strip()
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except ValueError:
            items = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                item = item.get("address") or item.get("number") or item.get("value")
            if isinstance(item, str) and item.strip():
                return item.strip()
        return None
    return next((part.strip() for part in re.split(r"[;|]", raw) if part.strip()), None)


def settings() -> SettingsCreator:
    """The model: Splink's out-of-the-box comparisons for people."""
    return SettingsCreator(
        link_type="dedupe_only",
        # Each pair is scored once, by the first rule that admits it. Email
        # and phone catch people whose names and dates differ; the swapped
        # rule catches given and family name entered the other way round.
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "surname"),
            block_on("surname", "dob"),
            block_on("first_name", "dob"),
            block_on("postcode", "first_name"),
            block_on("postcode", "surname"),
            "l.first_name = r.surname AND l.surname = r.first_name",
            block_on("email"),
            block_on("phone"),
        ],
        comparisons=[
            # Exact, swapped, Jaro-Winkler on both, exact on one; term
            # frequencies on the full name and on each part.
            cl.ForenameSurnameComparison(
                "first_name", "surname", forename_surname_concat_col_name="first_name_surname_concat"
            ),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            # Term frequencies on the exact levels: placeholders and shop
            # switchboards are shared by thousands, as c360 weighs them.
            cl.EmailComparison("email").configure(term_frequency_adjustments=True),
            cl.ExactMatch("phone").configure(term_frequency_adjustments=True),
            # Its sector/district/area levels are British postcode shapes;
            # other postcodes get exact match or not.
            cl.PostcodeComparison("postcode"),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("address", [1, 3]),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )


def train(linker: "Linker", recall: float, max_pairs_u: float) -> None:
    """Estimates the model without labels, as Splink's examples do."""
    # The prior: pairs these near-certain rules find, scaled up by the
    # share of all true pairs they are guessed to find.
    linker.training.estimate_probability_two_random_records_match(
        [
            block_on("first_name", "surname", "dob"),
            block_on("email"),
            block_on("phone"),
        ],
        recall=recall,
    )
    # u: how often each level happens between two random (so unrelated)
    # people. Seeded so that runs on the same data agree.
    linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs_u, seed=1)
    # m: expectation maximisation within blocks. A session learns nothing
    # about the columns it blocks on, so the second blocks on the date of
    # birth to learn the names the first blocks on.
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname"), estimate_without_term_frequencies=True
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("dob"), estimate_without_term_frequencies=True
    )


def write(con: "duckdb.DuckDBPyConnection", table: str, path: str) -> int:
    """Writes the scored pairs in the columns bench/accuracy.py reads; how many."""
    # Ordered, so that two runs on the same data give files that diff cleanly
    # (DuckDB's threads finish in any order).
    pairs = con.table(table).project(
        "unique_id_l AS left_profile_id, unique_id_r AS right_profile_id, match_probability AS probability"
    ).order("probability DESC, left_profile_id, right_profile_id")
    pairs.write_csv(path, header=True)
    return pairs.count("*").fetchall()[0][0]


if __name__ == "__main__":
    main()
