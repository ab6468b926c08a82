"""A Prometheus HTTP API client for ``query_range``, and reading a set of series with it.

Owns :class:`PrometheusClient` (``GET /api/v1/query_range``; a range longer than Prometheus's
11,000 points per series is asked for in pieces) and :func:`fetch`, which reads every
:class:`~netanomd.telemetry.series.Series` over one window into samples
(:data:`netanomd.telemetry.rows.SAMPLE_COLUMNS`). A server that cannot be reached, answers an
error or something that is not the API is a :class:`~netanomd.errors.TransportError` naming the
URL and the query.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from netanomd.errors import TransportError
from netanomd.telemetry.rows import SAMPLE_COLUMNS
from netanomd.telemetry.series import Series, entity_of

log = logging.getLogger(__name__)

#: Prometheus refuses a query_range of more points than this per series.
MAX_POINTS = 11_000

#: One result of a range query: its labels, its sample times and values.
Result = tuple[dict[str, str], np.ndarray, np.ndarray]


class PrometheusClient:
    """``query_range`` against one Prometheus server (``url``: its base, e.g.
    ``http://127.0.0.1:9090``)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TransportError(f"--prometheus {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Result]:
        """Every series ``query`` returns from ``start`` to ``end`` every ``step`` seconds."""
        if step <= 0 or end < start:
            raise ValueError(f"bad range: {start}..{end} step {step}")
        span = MAX_POINTS - 1
        parts: dict[tuple[tuple[str, str], ...], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        t = start
        while t <= end:
            last = min(end, t + span * step)
            for labels, ts, values in self._query(query, t, last, step):
                key = tuple(sorted(labels.items()))
                got = parts.setdefault(key, ([], []))
                got[0].append(ts)
                got[1].append(values)
            t = last + step
        return [(dict(k), np.concatenate(ts), np.concatenate(v)) for k, (ts, v) in parts.items()]

    def _query(self, query: str, start: float, end: float, step: float) -> list[Result]:
        params = urllib.parse.urlencode(
            {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        url = f"{self.url}/api/v1/query_range?{params}"
        where = f"Prometheus {self.url}, query {query!r}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:  # the API answers errors as JSON with a status
            body = exc.read()
            if not body:
                raise TransportError(f"{where}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"{where}: cannot reach it ({reason})") from exc
        try:
            answer: Any = json.loads(body)
        except ValueError as exc:
            raise TransportError(f"{where}: the answer is not JSON (is this Prometheus?)") from exc
        if not isinstance(answer, dict) or answer.get("status") != "success":
            err = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise TransportError(f"{where}: {err}")
        data = answer.get("data") or {}
        if data.get("resultType") != "matrix":
            raise TransportError(f"{where}: expected a matrix, got {data.get('resultType')!r}")
        out: list[Result] = []
        for item in data.get("result", []):
            values = item.get("values", [])
            ts = np.array([float(v[0]) for v in values], dtype=np.float64)
            vs = np.array([float(v[1]) for v in values], dtype=np.float64)
            out.append(({str(k): str(v) for k, v in item.get("metric", {}).items()}, ts, vs))
        return out


def rate_window(step: float) -> str:
    """The rate window for a step: four steps, at least 4 s (a rate needs two samples in it)."""
    return f"{max(4, math.ceil(4 * step))}s"


def fetch(
    client: PrometheusClient,
    series: Sequence[Series],
    start: float,
    end: float,
    step: float,
    window: str | None = None,
) -> pd.DataFrame:
    """Every series over ``start``..``end`` as samples (one row per entity, time and series).
    Results of one series that name the same entity (two ports of one host) are added up."""
    window = window or rate_window(step)
    frames = []
    for s in series:
        results = client.query_range(s.promql(window), start, end, step)
        log.debug("%s: %d result(s)", s.name, len(results))
        for labels, ts, values in results:
            frames.append(
                pd.DataFrame(
                    {
                        "entity": entity_of(labels, s.by),
                        "ts": ts,
                        "series": s.name,
                        "value": values,
                    }
                )
            )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SAMPLE_COLUMNS.items()})
    samples = pd.concat(frames, ignore_index=True)
    summed = samples.groupby(["entity", "ts", "series"], sort=True)["value"].sum()
    return summed.reset_index()
