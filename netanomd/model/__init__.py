"""The model: a trained, stored scorer, and how it is trained.

* :mod:`~netanomd.model.artifact`: :class:`Model` (run, save, load) and the ``.npz`` format;
* :mod:`~netanomd.model.training`: :func:`train`, the default feature spec and threshold rule;
* :mod:`~netanomd.model.robust`: fitting a detector on traffic that may hold attacks.

The model composes the stages below it (features, detectors, decision) and nothing below
imports it.
"""

from __future__ import annotations

from netanomd.model.artifact import Model
from netanomd.model.training import DEFAULT_THRESHOLD_QUANTILE, default_spec, train

__all__ = ["DEFAULT_THRESHOLD_QUANTILE", "Model", "default_spec", "train"]
