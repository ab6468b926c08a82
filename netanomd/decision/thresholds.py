"""Threshold rules: where the alert line goes on a detector's score scale.

Owns the rules a model can be deployed with, each returning the threshold and a
JSON-able description that the model artifact stores (``meta.threshold_rule``):

* ``quantile``: the q-quantile of the training scores (on traffic like the training set,
  ``1 - q`` of flows alert);
* ``budget``: at most ``alerts_per_day`` alerts at the observed flow rate, i.e. the quantile
  ``1 - alerts_per_day / flows_per_day`` of the training scores;
* ``incident_budget``: the lowest threshold (within the top 5% of training behaviours, and
  never alerting on more than :data:`MAX_TRAINING_ALERT_SHARE` of the training flows) whose
  training alerts, grouped per originator into incidents that close after ``quiet`` seconds
  without an alert, make at most ``incidents_per_day`` incidents per day: the analyst's load is
  counted in incidents, not flows, so a host's thousand alerts cost one;
* ``validation_f1``: when labels exist, the score that maximises F1 on a labeled validation
  split (never the test split).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from netanomd.errors import ModelError


def by_quantile(scores: np.ndarray, q: float) -> tuple[float, dict[str, Any]]:
    if not 0.0 < q < 1.0:
        raise ModelError(f"threshold quantile must be in (0, 1), got {q}")
    return float(np.quantile(scores, q)), {"method": "quantile", "quantile": q}


def by_budget(
    scores: np.ndarray, flows_per_day: float, alerts_per_day: float
) -> tuple[float, dict[str, Any]]:
    """Threshold for an alert budget at the training data's flow rate."""
    if flows_per_day <= 0 or alerts_per_day <= 0:
        raise ModelError("flows per day and alerts per day must be positive")
    q = float(np.clip(1.0 - alerts_per_day / flows_per_day, 0.5, 1.0 - 1e-9))
    t = float(np.quantile(scores, q))
    return t, {
        "method": "budget",
        "alerts_per_day": alerts_per_day,
        "flows_per_day": flows_per_day,
        "quantile": q,
    }


#: The incident budget never puts the threshold below this quantile of the training behaviours,
INCIDENT_BUDGET_FLOOR = 0.95
#: nor where more than this share of the training flows would alert. Behaviours are distinct
#: flow shapes: on a capture of one or two hosts a few behaviours are most of the flows, and the
#: budget alone (unmeetable there) would leave their every repetition above the line.
MAX_TRAINING_ALERT_SHARE = 0.005


def incidents_at(
    threshold: float, scores: np.ndarray, hosts: np.ndarray, ts: np.ndarray, quiet: float
) -> int:
    """Incidents the flows scoring ``>= threshold`` make: per host, a new one after a gap of
    more than ``quiet`` seconds."""
    m = scores >= threshold
    h, t = hosts[m], ts[m]
    order = np.lexsort((t, h))
    h, t = h[order], t[order]
    if not len(h):
        return 0
    return int(1 + ((h[1:] != h[:-1]) | (np.diff(t) > quiet)).sum())


def lowest_for_share(scores: np.ndarray, share: float) -> float:
    """The lowest threshold at which at most ``share`` of ``scores`` reach it (above the
    highest score when even one would be too many)."""
    k = int(np.floor(share * len(scores)))
    if k >= len(scores):
        return -np.inf
    return float(np.nextafter(np.sort(scores)[::-1][k], np.inf))


def by_incident_budget(
    scores: np.ndarray,
    hosts: np.ndarray,
    ts: np.ndarray,
    behaviour_scores: np.ndarray,
    *,
    incidents_per_day: float,
    quiet: float,
    max_alert_share: float = MAX_TRAINING_ALERT_SHARE,
) -> tuple[float, dict[str, Any]]:
    """The incident-budget rule (see the module docstring); ``scores``, ``hosts`` (codes) and
    ``ts`` describe the training flows, ``behaviour_scores`` bound the search, and the line is
    never where more than ``max_alert_share`` of the training flows would alert."""
    if incidents_per_day < 0 or quiet <= 0:
        raise ModelError("incidents per day must be >= 0 and the quiet period > 0 s")
    if not 0.0 < max_alert_share <= 1.0:
        raise ModelError(f"the training alert share must be in (0, 1], got {max_alert_share}")
    finite = ts[np.isfinite(ts)]
    days = max(float(finite.max() - finite.min()) / 86400.0, 1 / 24) if finite.size else 1.0
    qs = np.linspace(INCIDENT_BUDGET_FLOOR, 1.0, 101)
    candidates = np.maximum(
        np.quantile(behaviour_scores, qs), lowest_for_share(scores, max_alert_share)
    )
    allowed = incidents_per_day * days
    pick = len(candidates) - 1
    for i, t in enumerate(candidates):
        if incidents_at(float(t), scores, hosts, ts, quiet) <= allowed:
            pick = i
            break
    t = float(candidates[pick])
    return t, {
        "method": "incident_budget",
        "incidents_per_day": incidents_per_day,
        "quiet": quiet,
        "training_days": round(days, 4),
        "training_incidents": incidents_at(t, scores, hosts, ts, quiet),
        "quantile": float(qs[pick]),
        "max_training_alert_share": max_alert_share,
        "training_alert_share": float(np.mean(scores >= t)) if len(scores) else 0.0,
    }


def flows_per_day(ts: np.ndarray) -> float | None:
    """The observed flow rate of a capture, or None without a usable time span."""
    t = ts[np.isfinite(ts)]
    if t.size < 2:
        return None
    span = float(t.max() - t.min())
    return t.size * 86400.0 / span if span > 0 else None


def by_validation_f1(scores: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, Any]]:
    """The threshold with the best F1 on labeled validation rows (y in {0, 1})."""
    from sklearn.metrics import precision_recall_curve  # scoring never needs scikit-learn

    keep = y >= 0
    s, t = scores[keep], y[keep]
    if t.min(initial=1) == t.max(initial=0):
        raise ModelError("validation split needs both benign and malicious flows")
    precision, recall, thresholds = precision_recall_curve(t, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    return float(thresholds[best]), {
        "method": "validation_f1",
        "f1": float(f1[best]),
        "validation_rows": int(keep.sum()),
    }
