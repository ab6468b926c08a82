"""Zeek integration: the wire contract (:mod:`netanomd.zeek.api`) shared with ``zeek-scripts/``."""
