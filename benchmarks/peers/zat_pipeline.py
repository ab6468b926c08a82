"""zat's documented anomaly-detection pipeline on a Zeek conn.log: ``LogToDataFrame`` ->
``DataFrameToMatrix`` -> scikit-learn IsolationForest fitted on it and predicting every row
(as zat's "Anomaly Detection" notebook does, with conn.log's fields). Runs in the peers'
virtualenv.

Usage: ``python zat_pipeline.py CONN_LOG``; prints ``rows N anomalies K``.
"""

from __future__ import annotations

import sys
import warnings

from sklearn.ensemble import IsolationForest
from zat.dataframe_to_matrix import DataFrameToMatrix
from zat.log_to_dataframe import LogToDataFrame

FEATURES = [
    "id.resp_p",
    "proto",
    "service",
    "conn_state",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "orig_pkts",
    "resp_pkts",
]


def main() -> int:
    warnings.simplefilter("ignore")  # pandas' copy-on-write notices about zat's fillna
    df = LogToDataFrame().create_dataframe(sys.argv[1])
    matrix = DataFrameToMatrix().fit_transform(df[FEATURES])
    clf = IsolationForest(random_state=0, n_jobs=1).fit(matrix)
    pred = clf.predict(matrix)
    print(f"rows {len(df)} anomalies {int((pred == -1).sum())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
