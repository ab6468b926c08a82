"""Decision: turn scores into verdicts and explain the anomalous ones.

* :mod:`~netanomd.decision.verdicts`: the verdict rule (``score >= threshold``), the
  :class:`Alert` every sink consumes and :func:`make_alerts`;
* :mod:`~netanomd.decision.explain`: the training baselines an alert is explained against
  (which features lie furthest outside what the model saw, with observed value and baseline);
* :mod:`~netanomd.decision.thresholds`: the rules that place the threshold at training time.

This package re-exports only the verdict types, so a sink importing :class:`Alert` pulls in
nothing of features or scikit-learn.
"""

from __future__ import annotations

from netanomd.decision.verdicts import Alert, Contribution, above_threshold, make_alerts

__all__ = ["Alert", "Contribution", "above_threshold", "make_alerts"]
