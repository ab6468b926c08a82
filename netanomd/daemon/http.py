"""The daemon's HTTP endpoint: Prometheus metrics, health, and a scoring API.

* ``GET /metrics``: Prometheus text format (``prometheus_client``): flows received per source,
  scored, alerts per sink, drops by reason, duplicates, queue depth, batch latency and score
  histograms, incident updates written, Elasticsearch spool size, model id, load and training
  times, Zeek transport counters, HTTP requests refused by reason.
* ``GET /healthz``: 200 with ``{"ready": true, ...}`` once the model is loaded and the sources
  are open, else 503. Without the token (when one is set) it says only ``{"ready": ...}``, so a
  container health check needs no secret.
* ``POST /v1/score``: one flow (JSON object) or many (JSON array, or NDJSON as in Zeek's JSON
  logs; at most ``max_rows``),
  answered by :func:`netanomd.daemon.score_api.score_json` (score, threshold, verdict and
  explanation per flow).

With ``sinks.metrics.token_file`` every request but ``/healthz`` needs
``Authorization: Bearer <token>`` (else 401); with ``tls_cert``/``tls_key`` it is served over
TLS. Off loopback the configuration requires both (:mod:`netanomd.config.validation`). The
transport and its bounds are :mod:`netanomd.daemon.httpserver`'s.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from netanomd.config import MetricsSinkConfig
from netanomd.daemon.httpserver import (
    BadRequest,
    HttpServer,
    Limits,
    Request,
    Response,
    tls_context,
)
from netanomd.daemon.pipeline import Pipeline
from netanomd.daemon.score_api import parse_body, score_json
from netanomd.fsutil import read_token
from netanomd.model import Model
from netanomd.model.drift import DriftReport, trained_at

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = tuple(round(x, 2) for x in np.arange(0.3, 1.0001, 0.05))


class Histogram:
    """A histogram fed with whole arrays at once (np.histogram), exported as cumulative
    Prometheus buckets; cheap enough to observe every flow's score."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        idx = np.searchsorted(self.bounds, values, side="left")
        with self._lock:
            self.counts += np.bincount(idx, minlength=len(self.counts))
            self.sum += float(np.sum(values))

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        with self._lock:
            cum = np.cumsum(self.counts)
            buckets = [(str(b), int(c)) for b, c in zip(self.bounds, cum[:-1], strict=True)]
            buckets.append(("+Inf", int(cum[-1])))
            return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.sum)


class DaemonCollector:
    """Reads the daemon's counters when Prometheus scrapes (nothing is counted twice)."""

    def __init__(self, daemon: Any) -> None:
        self.d = daemon

    def collect(self) -> Iterator[Any]:
        d = self.d
        p: Pipeline | None = d.pipeline
        if p is None:
            return
        st = p.stats
        c = CounterMetricFamily("netanomd_flows_received", "Flows received", labels=["source"])
        for src, n in sorted(st.received.items()):
            c.add_metric([src], n)
        yield c
        yield CounterMetricFamily("netanomd_flows_scored", "Flows scored", value=st.scored)
        bad = CounterMetricFamily(
            "netanomd_records_malformed",
            "Records a source skipped as malformed",
            labels=["source", "reason"],
        )
        other = CounterMetricFamily(
            "netanomd_records_skipped",
            "Records of other kinds a source skipped on purpose (e.g. EVE dns events)",
            labels=["source", "kind"],
        )
        for src in d.sources:
            stats = getattr(src, "stats", None)
            if stats is None:
                continue
            for reason, n in sorted(stats.reasons.items()):
                bad.add_metric([src.name, reason], n)
            for kind, n in sorted(stats.skipped.items()):
                other.add_metric([src.name, kind], n)
        yield bad
        yield other
        yield CounterMetricFamily(
            "netanomd_flows_duplicate",
            "Flows skipped as already seen (community_id)",
            value=st.duplicates,
        )
        c = CounterMetricFamily("netanomd_flows_dropped", "Flows dropped", labels=["reason"])
        for reason, n in sorted(st.dropped.items()):
            c.add_metric([reason], n)
        yield c
        c = CounterMetricFamily("netanomd_alerts", "Alerts written", labels=["sink"])
        for sink_name, n in sorted(p.sinks.written.items()):
            c.add_metric([sink_name], n)
        yield c
        yield CounterMetricFamily(
            "netanomd_incident_updates",
            "Incident updates written (an incident is written again each time it changes)",
            value=st.incident_updates,
        )
        if p.suppress is not None:
            c = CounterMetricFamily(
                "netanomd_suppressed",
                "Flow alerts and incidents an allowlist rule kept from the sinks",
                labels=["rule", "kind"],
            )
            for (rule, kind), n in sorted(p.suppress.totals.items()):
                c.add_metric([rule, kind], n)
            yield c
        c = CounterMetricFamily("netanomd_sink_errors", "Sink write failures", labels=["sink"])
        for sink_name, n in sorted(p.sinks.errors.items()):
            c.add_metric([sink_name], n)
        yield c
        yield GaugeMetricFamily(
            "netanomd_queue_flows", "Flows waiting to be scored", value=p.queued
        )
        yield GaugeMetricFamily(
            "netanomd_queue_capacity", "Queue bound (flows)", value=p.queue_size
        )
        yield d.latency.family(
            "netanomd_batch_latency_seconds",
            "Time from a micro-batch's first arrival to its alerts written",
        )
        yield d.scores.family("netanomd_score", "Anomaly scores of scored flows")
        model: Model = p.model
        yield InfoMetricFamily(
            "netanomd_model", "The model in use", value={"model_id": model.model_id}
        )
        yield GaugeMetricFamily(
            "netanomd_model_loaded_timestamp_seconds",
            "When the model in use was loaded",
            value=d.model_loaded_at,
        )
        trained = trained_at(model.meta)
        if trained is not None:  # its age is time() - this (Grafana's "model age")
            yield GaugeMetricFamily(
                "netanomd_model_trained_timestamp_seconds",
                "When the model in use was trained",
                value=trained,
            )
        yield GaugeMetricFamily(
            "netanomd_model_threshold",
            "Alert threshold in use",
            value=p.threshold if p.threshold is not None else model.threshold,
        )
        yield from _drift_families(p)
        es = d.es_sink
        if es is not None:
            yield GaugeMetricFamily(
                "netanomd_es_spool_bytes", "Elasticsearch spool size", value=es.spool.size()
            )
            yield CounterMetricFamily(
                "netanomd_es_sent", "Alerts delivered to Elasticsearch", value=es.sent
            )
            yield CounterMetricFamily(
                "netanomd_es_dead_lettered", "Alerts Elasticsearch refused", value=es.dead_lettered
            )
        server = d.server
        if server is not None:
            c = CounterMetricFamily(
                "netanomd_http_rejected", "HTTP requests refused, by reason", labels=["reason"]
            )
            for reason, n in sorted(server.http.rejected.items()):
                c.add_metric([reason], n)
            yield c
            yield GaugeMetricFamily(
                "netanomd_http_connections", "Open HTTP connections", value=server.http.connections
            )
        c = CounterMetricFamily(
            "netanomd_zeek_messages", "Zeek transport counters", labels=["transport", "counter"]
        )
        for src in d.sources:
            if hasattr(src, "publish_verdicts"):
                for key, value in vars(src.counters).items():
                    c.add_metric([src.name, key], value)
        yield c


def drift_of(p: Pipeline) -> DriftReport | None:
    """The daemon's last drift pass (None without a reservoir, or before the first pass)."""
    return None if p.reservoir is None else p.reservoir.recent.latest


def _drift_families(p: Pipeline) -> Iterator[Any]:
    report = drift_of(p)
    if report is None:
        return
    yield GaugeMetricFamily(
        "netanomd_drift_flows", "Recent flows drift is measured on", value=report.rows
    )
    yield GaugeMetricFamily(
        "netanomd_drift_score_psi",
        "Population stability index of recent scores vs the training window",
        value=report.score_psi,
    )
    g = GaugeMetricFamily(
        "netanomd_drift_feature_psi",
        "Population stability index of recent flows vs the training window, per feature",
        labels=["feature"],
    )
    for name, value in sorted(report.feature_psi.items()):
        g.add_metric([name], value)
    yield g
    yield GaugeMetricFamily(
        "netanomd_drift_flagged",
        "1 when the traffic drifted from the training window",
        value=float(report.flagged),
    )


class Server:
    """The endpoint: routes, authentication and the scoring API's size limits, served by a
    bounded :class:`~netanomd.daemon.httpserver.HttpServer`."""

    def __init__(self, daemon: Any, settings: MetricsSinkConfig) -> None:
        self.daemon = daemon
        self.max_rows = settings.max_rows
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(daemon))
        self.token = (
            read_token(settings.token_file, "sinks.metrics.token_file")
            if settings.token_file
            else None
        )
        tls = None
        if settings.tls_cert and settings.tls_key:
            tls = tls_context(settings.tls_cert, settings.tls_key)
        self.listen = settings.listen
        host, _, port = settings.listen.rpartition(":")
        limits = Limits(
            max_connections=settings.max_connections,
            request_timeout=settings.request_timeout,
            max_body=settings.max_body_bytes,
        )
        self.http = HttpServer(host.strip("[]") or "127.0.0.1", int(port), self.handle, limits, tls)
        self.port = self.http.port
        self.scheme = "https" if tls else "http"

    def start(self) -> None:
        self.http.start()
        host = self.listen.rpartition(":")[0]
        log.info(
            "HTTP endpoint on %s://%s:%d (%s)",
            self.scheme,
            host,
            self.port,
            "bearer token required" if self.token else "no token",
        )

    def stop(self) -> None:
        self.http.stop()

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )

    def handle(self, request: Request) -> Response:
        path = request.path.partition("?")[0]
        route = ROUTES.get(path)
        if route is None:
            return Response(404, b'{"error": "not found"}')
        if request.method != route:
            return Response(405, b'{"error": "method not allowed"}', headers={"Allow": route})
        authorized = self._authorized(request)
        if path == "/healthz":
            h = self.daemon.health()
            # Unauthenticated (a container's health check): readiness only, nothing about
            # the sources, sinks or model.
            if authorized and self.daemon.pipeline is not None:
                drift = drift_of(self.daemon.pipeline)
                if drift is not None:
                    h["drift"] = drift.to_dict()
                    h["warnings"] = [w for w in (drift.warning(),) if w]
            body = h if authorized else {"ready": h["ready"]}
            return Response(200 if h["ready"] else 503, json.dumps(body).encode())
        if not authorized:
            self.http.count("unauthorized", f"{path}: missing or wrong bearer token")
            return Response(
                401,
                b'{"error": "missing or wrong bearer token"}',
                headers={"WWW-Authenticate": 'Bearer realm="netanomd"'},
            )
        if path == "/metrics":
            return Response(200, generate_latest(self.registry), "text/plain; version=0.0.4")
        return self._score(request.body)

    def _score(self, body: bytes) -> Response:
        try:
            payload = parse_body(body)
            p = self.daemon.pipeline
            result = score_json(p.model, p.threshold, payload, max_rows=self.max_rows)
        except RecursionError:
            raise BadRequest(400, "bad_request", "JSON nested too deeply") from None
        except (ValueError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError included
            raise BadRequest(400, "bad_request", str(exc)) from None
        return Response(200, json.dumps(result).encode())


#: Path -> the one method it answers.
ROUTES = {"/metrics": "GET", "/healthz": "GET", "/v1/score": "POST"}
