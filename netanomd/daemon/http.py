"""The daemon's HTTP endpoint on a localhost port: Prometheus metrics, health, and a scoring API.

* ``GET /metrics``: Prometheus text format (``prometheus_client``): flows received per source,
  scored, alerts per sink, drops by reason, duplicates, queue depth, batch latency and score
  histograms, Elasticsearch spool size, model id and age, Zeek transport counters.
* ``GET /healthz``: 200 with ``{"ready": true, ...}`` once the model is loaded and the sources
  are open, else 503.
* ``POST /v1/score``: one flow (JSON object) or many (JSON array), answered by
  :func:`netanomd.daemon.score_api.score_json` (score, threshold, verdict and explanation
  per flow).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from netanomd.daemon.pipeline import Pipeline
from netanomd.daemon.score_api import score_json
from netanomd.model import Model

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORE_BUCKETS = tuple(round(x, 2) for x in np.arange(0.3, 1.0001, 0.05))
MAX_BODY = 4 << 20


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
        yield GaugeMetricFamily(
            "netanomd_model_threshold",
            "Alert threshold in use",
            value=p.threshold if p.threshold is not None else model.threshold,
        )
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
        c = CounterMetricFamily(
            "netanomd_zeek_messages", "Zeek transport counters", labels=["transport", "counter"]
        )
        for src in d.sources:
            if hasattr(src, "publish_verdicts"):
                for key, value in vars(src.counters).items():
                    c.add_metric([src.name, key], value)
        yield c


class Server:
    def __init__(self, daemon: Any, host: str, port: int) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry()
        self.registry.register(DaemonCollector(daemon))
        handler = _handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: Server) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("http: " + fmt, *args)

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(server.registry), "text/plain; version=0.0.4")
            elif self.path == "/healthz":
                h = server.daemon.health()
                self._send(200 if h["ready"] else 503, json.dumps(h).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            if self.path != "/v1/score":
                self._send(404, b'{"error": "not found"}')
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self._send(400, b'{"error": "body must be 1 byte to 4 MiB of JSON"}')
                return
            try:
                payload = json.loads(self.rfile.read(length))
                p = server.daemon.pipeline
                result = score_json(p.model, p.threshold, payload)
            except (ValueError, TypeError) as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode())
                return
            self._send(200, json.dumps(result).encode())

    return Handler
