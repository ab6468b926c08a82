"""The seed-style pipeline: ``pandas.read_csv`` of a Zeek TSV conn.log, then scikit-learn's
IsolationForest fitted on it and predicting every row. Runs in the peers' virtualenv.

Usage: ``python seed_style.py CONN_LOG``; prints ``rows N anomalies K``.
"""

from __future__ import annotations

import sys

import pandas as pd
from sklearn.ensemble import IsolationForest

NUMERIC = [
    "id.orig_p",
    "id.resp_p",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "missed_bytes",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
]
CATEGORICAL = ["proto", "service", "conn_state"]


def fields(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#fields"):
                return line.rstrip("\n").split("\t")[1:]
    raise SystemExit(f"{path}: no #fields line")


def main() -> int:
    path = sys.argv[1]
    df = pd.read_csv(
        path,
        sep="\t",
        comment="#",
        names=fields(path),
        na_values=["-", "(empty)"],
        low_memory=False,
    )
    X = pd.concat(
        [
            df[NUMERIC].apply(pd.to_numeric, errors="coerce").fillna(0.0),
            pd.get_dummies(df[CATEGORICAL].fillna("none"), dtype=float),
        ],
        axis=1,
    ).to_numpy(dtype="float32")
    clf = IsolationForest(random_state=0, n_jobs=1).fit(X)
    pred = clf.predict(X)
    print(f"rows {len(df)} anomalies {int((pred == -1).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
