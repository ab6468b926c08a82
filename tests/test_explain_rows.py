"""Explanations of a batch (:meth:`Baselines.explain`) are made once per distinct row and shared:
on real captures every row's reasons are the ones it gets explained on its own, rows with equal
reasons share one tuple, and a batch of repeated flows is a few distinct rows."""

from __future__ import annotations

import numpy as np

from netanomd.data import attack_files, baseline_files
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sources import ReadStats
from netanomd.sources.files import read_batches


def test_each_row_is_explained_as_on_its_own(demo: Model) -> None:
    flows = FlowBatch.concat(list(read_batches([*baseline_files(), *attack_files()], ReadStats())))
    X = demo.features(flows, fresh=True)
    services = flows.column("service").to_pylist()
    protos = flows.column("proto").to_pylist()
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(len(flows), 400, replace=False))
    rows = np.concatenate([rows, rows[:50]])  # repeated rows too
    batch = demo.baselines.explain(X[rows], [services[i] for i in rows], [protos[i] for i in rows])
    alone = [
        demo.baselines.explain(X[i : i + 1], [services[i]], [protos[i]])[0] for i in rows.tolist()
    ]
    assert batch == alone
    assert sum(1 for r in batch if r) > 100  # (rows within training have none)
    assert {"above", "below", "rare"} <= {c.direction for r in batch for c in r}
    assert all(batch[400 + k] is batch[k] for k in range(50))  # equal rows share one tuple
    # the whole baseline and attack traffic: far fewer distinct rankings than rows
    every = demo.baselines.explain(X, services, protos)
    assert len({id(r) for r in every}) < len(every) / 3
