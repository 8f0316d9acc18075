#!/usr/bin/env python3
"""Accuracy of `c360 dedupe` against the truth file of `c360 seed`.

Usage: bench/accuracy.py TRUTH.csv PAIRS.csv [--png OUT.png] [--auto 0.999] [--review 0.9] [--by-name]

TRUTH.csv is `c360 seed --truth` (profile_id_a, profile_id_b, ..., evidence);
PAIRS.csv is `c360 dedupe --dry-run --export-pairs PAIRS.csv --export-from 0.01`.
True pairs are closed under their clusters (two duplicates of one original
are a true pair too). With --by-name the truth names records as the pairs'
`left` and `right` columns do (an imported file's keys, `dedupe --source`)
rather than by profile id. Prints pairwise precision and recall at several
thresholds, recall per evidence class at the review and auto thresholds, and
draws the precision-recall curve over thresholds when matplotlib is there.
"""

import argparse
import csv
from collections import Counter, defaultdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("truth")
    parser.add_argument("pairs")
    parser.add_argument("--png")
    parser.add_argument("--auto", type=float, default=0.999)
    parser.add_argument("--review", type=float, default=0.9)
    parser.add_argument("--classes", action="store_true", help="recall for every combination of evidence")
    parser.add_argument("--by-name", action="store_true", help="match the truth to the pairs' left/right names")
    args = parser.parse_args()

    parent: dict[str, str] = {}
    find = union_find(parent)

    evidence: dict[tuple[str, str], list[str]] = {}
    with open(args.truth, newline="") as f:
        for row in csv.DictReader(f):
            a, b = row["profile_id_a"], row["profile_id_b"]
            parent[find(a)] = find(b)
            evidence[tuple(sorted((a, b)))] = classify(row.get("evidence", ""))
    sizes = Counter(find(x) for x in list(parent))
    true_pairs = sum(n * (n - 1) // 2 for n in sizes.values())

    scored: dict[tuple[str, str], float] = {}
    with open(args.pairs, newline="") as f:
        for row in csv.DictReader(f):
            columns = ("left", "right") if args.by_name else ("left_profile_id", "right_profile_id")
            key = tuple(sorted((row[columns[0]], row[columns[1]])))
            scored[key] = float(row["probability"])

    def same(key: tuple[str, str]) -> bool:
        a, b = key
        return a in parent and b in parent and find(a) == find(b)

    ranked = sorted(scored.items(), key=lambda kv: -kv[1])
    print(f"true pairs {true_pairs}, scored pairs {len(scored)}")
    print("threshold  pairs  true  precision  recall     F1")
    for threshold in [0.5, 0.9, 0.99, 0.999, 0.9999]:
        chosen = [k for k, p in ranked if p >= threshold]
        right = sum(1 for k in chosen if same(k))
        precision = right / len(chosen) if chosen else 1.0
        recall = right / max(true_pairs, 1)
        print(f"{threshold:<10} {len(chosen):>6} {right:>5}  {precision:9.3f}  {recall:6.3f}  {f1(precision, recall):.3f}")
    # The best any threshold gives: a fair figure for a tool whose threshold
    # was not tuned on this data.
    best, at, right = (0.0, 1.0, 0)
    for n, (key, p) in enumerate(ranked, 1):
        right += same(key)
        score = f1(right / n, right / max(true_pairs, 1))
        if score > best and (n == len(ranked) or ranked[n][1] < p):
            best, at = score, p
    print(f"best F1 {best:.3f} at threshold {at:.6f}")

    # Clusters: the pairs at the auto threshold joined transitively, against
    # the true clusters (every seeded person with duplicates); a cluster is
    # right when it holds exactly one person's records.
    found: dict[str, str] = {}
    root = union_find(found)

    for (a, b), p in ranked:
        if p < args.auto:
            break
        found[root(a)] = root(b)
    predicted: dict[str, set[str]] = defaultdict(set)
    for x in list(found):
        predicted[root(x)].add(x)
    truth_clusters: dict[str, set[str]] = defaultdict(set)
    for x in list(parent):
        truth_clusters[find(x)].add(x)
    true_sets = {frozenset(c) for c in truth_clusters.values() if len(c) > 1}
    exact = sum(1 for c in predicted.values() if frozenset(c) in true_sets)
    print(f"clusters at {args.auto}: {len(predicted)} found, {exact} exactly one person's records "
          f"({exact / max(len(predicted), 1):.3f} of those found, {exact / max(len(true_sets), 1):.3f} "
          f"of {len(true_sets)} true clusters)")

    # Two views of the seeded pairs: by how the name differs, and by the
    # strongest evidence besides the name; --classes prints every combination.
    views = [("name", lambda parts: parts[0] if parts else "unknown"), ("evidence besides the name", strongest)]
    if args.classes:
        views.append(("class", lambda parts: " + ".join(parts) if parts else "unknown"))
    for title, key_of in views:
        print(f"\nrecall per {title} (seeded pairs)")
        by_class: dict[str, list[float]] = defaultdict(list)
        for key, parts in evidence.items():
            by_class[key_of(parts)].append(scored.get(key, 0.0))
        print(f"{title[:34]:<34} {'pairs':>6} {'review':>7} {'auto':>7}")
        for cls in sorted(by_class):
            ps = by_class[cls]
            review = sum(p >= args.review for p in ps) / len(ps)
            auto = sum(p >= args.auto for p in ps) / len(ps)
            print(f"{cls:<34} {len(ps):>6} {review:7.3f} {auto:7.3f}")

    if args.png:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib is missing: pip install matplotlib")
            return
        precision, recall, right = [], [], 0
        for i, (key, _) in enumerate(ranked, 1):
            right += same(key)
            precision.append(right / i)
            recall.append(right / max(true_pairs, 1))
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.plot(recall, precision)
        for threshold in (args.review, args.auto):
            n = sum(1 for _, p in ranked if p >= threshold)
            if n:
                ax.plot(recall[n - 1], precision[n - 1], "o", label=f"threshold {threshold}")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title("c360 dedupe on c360 seed data: pairwise precision-recall")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}")


def union_find(parent: dict[str, str]):
    """The root finder of a union-find forest kept in `parent` (join: parent[find(a)] = find(b))."""

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    return find


def f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def classify(evidence: str) -> list[str]:
    """The name change, then the shared fields: ['typo_given', 'birth_date', 'address']."""
    return [p for p in evidence.split(";") if p]


# Strongest first: what a pair shares besides its (changed) name.
STRENGTH = ["shared_email", "shared_phone", "birth_date", "address", "city"]


def strongest(parts: list[str]) -> str:
    shared = [p for p in STRENGTH if p in parts[1:]]
    if not shared:
        return "nothing else"
    if shared[0] in ("birth_date", "address") and "birth_date" in shared and "address" in shared:
        return "birth_date + address"
    return shared[0]


if __name__ == "__main__":
    main()
