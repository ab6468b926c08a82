"""Allowlists and analyst feedback: rules that quiet what is known to be fine, the suppression
hook of the decision path, and the verdicts (mark benign, confirm) stored beside the alerts.

* :mod:`netanomd.feedback.rules`: :class:`Rule`, the default discovery rules, rule files;
* :mod:`netanomd.feedback.suppress`: :class:`Suppressor`, called by the stream on every batch;
* :mod:`netanomd.feedback.store`: :class:`FeedbackStore`, the ``feedback_*`` tables.
"""

from netanomd.feedback.rules import DEFAULT_RULES, Rule, RuleSet, load_rules_file, rule_from_dict
from netanomd.feedback.store import FeedbackStore, benign_conn_lines, open_store
from netanomd.feedback.suppress import Suppressor

__all__ = [
    "DEFAULT_RULES",
    "FeedbackStore",
    "Rule",
    "RuleSet",
    "Suppressor",
    "benign_conn_lines",
    "load_rules_file",
    "open_store",
    "rule_from_dict",
]
