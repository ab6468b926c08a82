"""Hiding secrets in what the configuration shows: set secret keys and passwords in URLs."""

from __future__ import annotations

import re

MASK = "***"

_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*):([^/@\s]*)@")


def mask_str(text: str) -> str:
    """``redis://user:hunter2@host`` -> ``redis://user:***@host``; other text unchanged."""
    return _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
