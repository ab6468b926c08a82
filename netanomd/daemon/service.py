"""``netanomd run``: the sensor daemon, wired from a :class:`~netanomd.config.Config`.

Owns the life cycle: load the model, open the sinks (SQLite, Elasticsearch with its spool and
sender thread, Zeek notices), start the sources (Zeek WebSocket / Broker, followed logs, EVE
sockets, Redis), the scoring loop and the HTTP endpoint; tell systemd ``READY=1`` once all of
that is up; report ``STATUS=`` (flows/s) and ping the watchdog only while the scoring loop is
turning (a stalled pipeline stops the pings and systemd restarts the service).

Signals: SIGHUP reloads the configuration and the model together — a model that fails to load
keeps the old one running and logs why (changed sources or sinks need a restart; the log says
so). SIGTERM/SIGINT stop intake, drain the queue, flush the sinks and the Elasticsearch spool,
and exit 0 within ``shutdown_timeout`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netanomd.config import (
    Config,
    RedisSourceConfig,
    SuricataEveSourceConfig,
    SuricataSocketSourceConfig,
    ZeekBrokerSourceConfig,
    ZeekLogSourceConfig,
    ZeekWsSourceConfig,
    load_config,
)
from netanomd.daemon.http import LATENCY_BUCKETS, SCORE_BUCKETS, Histogram, Server
from netanomd.daemon.inputs import EveSocket, LogFollower, OffsetStore, RedisInput
from netanomd.daemon.pipeline import Pipeline
from netanomd.decision import Alert
from netanomd.errors import ModelError, NetanomError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sdnotify import Notifier
from netanomd.sinks import Sink
from netanomd.sinks.elasticsearch import ElasticsearchSink
from netanomd.sinks.sqlite import SQLiteSink
from netanomd.sinks.zeek_notice import ZeekNoticeSink
from netanomd.sources import Ack, Emit

log = logging.getLogger(__name__)


class Daemon:
    def __init__(
        self,
        config_path: str | None,
        overrides: Sequence[str] = (),
        *,
        notifier: Notifier | None = None,
        shutdown_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.overrides = list(overrides)
        self.env = env
        self.config: Config = load_config(config_path, env=env, overrides=self.overrides)
        self.notifier = notifier or Notifier()
        self.shutdown_timeout = shutdown_timeout
        self.pipeline: Pipeline | None = None
        self.sinks: list[Sink] = []
        self.es_sink: ElasticsearchSink | None = None
        self.inputs: list[Any] = []
        self.zeek_transports: list[tuple[str, Any]] = []
        self.threads: list[threading.Thread] = []
        self.server: Server | None = None
        self.latency = Histogram(LATENCY_BUCKETS)
        self.scores = Histogram(SCORE_BUCKETS)
        self.model_loaded_at = 0.0
        self.ready = False
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._last_scored = (time.monotonic(), 0)
        self.rate = 0.0

    # -- set-up ------------------------------------------------------------------------------
    def _load_model(self) -> Model:
        model = Model.load(self.config.model.path)
        self.model_loaded_at = time.time()
        return model

    def _make_sinks(self) -> None:
        cfg = self.config.sinks
        if cfg.sqlite.enabled:
            self.sinks.append(SQLiteSink(cfg.sqlite.path))
        if cfg.elasticsearch.enabled:
            from netanomd.ecs import ObserverInfo
            from netanomd.es_setup import ElasticsearchConfig
            from netanomd.spool import Spool

            es_cfg = ElasticsearchConfig.from_mapping(
                cfg.elasticsearch.es_mapping(), where="sinks.elasticsearch"
            )
            host = socket.gethostname()
            self.es_sink = ElasticsearchSink(
                es_cfg.client(),
                Spool(Path(self.config.state_dir) / "es-spool"),
                ObserverInfo(name=host, hostname=host),
                namespace=es_cfg.namespace,
                dead_letter=Path(self.config.state_dir) / "es-dead-letter.jsonl",
            )
            self.es_sink.start()
            self.sinks.append(self.es_sink)

    def _make_inputs(self, pipeline: Pipeline) -> None:
        offsets = OffsetStore(Path(self.config.state_dir) / "offsets.json")
        for i, src in enumerate(self.config.sources):
            name = f"{src.type}[{i}]"
            if isinstance(src, ZeekWsSourceConfig | ZeekBrokerSourceConfig):
                from netanomd.sources.zeek_link import zeek_source

                t = zeek_source(src, _offer(pipeline, name), name=name)
                self.zeek_transports.append((name, t))
                self.inputs.append(t)
            elif isinstance(src, ZeekLogSourceConfig | SuricataEveSourceConfig):
                kind = "zeek" if isinstance(src, ZeekLogSourceConfig) else "eve"
                for path in sorted(Path(p) for p in _expand(src.path)):
                    self.inputs.append(
                        LogFollower(
                            path,
                            kind,
                            pipeline,
                            offsets,
                            from_start=src.from_start,
                            name=f"{name}:{path.name}",
                        )
                    )
            elif isinstance(src, SuricataSocketSourceConfig):
                self.inputs.append(EveSocket(src.path, src.kind, pipeline, name=name))
            elif isinstance(src, RedisSourceConfig):
                self.inputs.append(RedisInput(src.url, src.key, src.mode, pipeline, name=name))
        if self.config.sinks.zeek_notice.enabled:
            for _, t in self.zeek_transports:
                self.sinks.append(ZeekNoticeSink(t))

    def start(self) -> None:
        cfg = self.config
        Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
        model = self._load_model()
        self._make_sinks()
        p = cfg.pipeline
        self.pipeline = Pipeline(
            model,
            self.sinks,
            batch_size=p.batch_size,
            batch_timeout=p.batch_timeout_ms / 1000.0,
            queue_size=p.queue_size,
            on_full=p.on_full,
            dedup_window=p.dedup_window_seconds if p.dedup_community_id else None,
            threshold=cfg.model.threshold,
            on_batch=self._observe,
        )
        self._make_inputs(self.pipeline)
        self.pipeline.sinks = list(self.sinks)  # the Zeek notice sinks exist only now
        if cfg.sinks.metrics.enabled:
            host, _, port = cfg.sinks.metrics.listen.rpartition(":")
            self.server = Server(self, host.strip("[]") or "127.0.0.1", int(port))
            self.server.start()
        self._spawn("pipeline", self.pipeline.run)
        for inp in self.inputs:
            self._spawn(getattr(inp, "name", type(inp).__name__), inp.run)
        for inp in self.inputs:  # sockets must exist before Suricata connects
            ready = getattr(inp, "ready", None)
            if ready is not None:
                ready.wait(10)
        self.ready = True
        self.notifier.ready()
        self.notifier.status(f"model {model.model_id}; {len(self.inputs)} sources")
        log.info(
            "netanomd ready: model %s, %d sources, %d sinks",
            model.model_id,
            len(self.inputs),
            len(self.sinks),
        )

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _observe(
        self, batch: FlowBatch, scores: np.ndarray, alerts: list[Alert], arrived: float
    ) -> None:
        self.scores.observe(scores)
        self.latency.observe(np.array([time.monotonic() - arrived]))

    # -- running -----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "ready": self.ready and p is not None,
            "model": p.model.model_id if p else None,
            "queued": p.queued if p else 0,
            "flows_per_second": round(self.rate, 1),
        }

    def reload(self) -> bool:
        """SIGHUP: re-read the configuration and the model; keep the old ones on failure."""
        self.notifier.reloading()
        try:
            try:
                new_cfg = load_config(self.config_path, env=self.env, overrides=self.overrides)
            except NetanomError as exc:
                log.error("reload: configuration rejected, keeping the running one:\n%s", exc)
                return False
            try:
                model = Model.load(new_cfg.model.path)
            except (ModelError, OSError) as exc:
                log.error(
                    "reload: model %s rejected, keeping %s: %s",
                    new_cfg.model.path,
                    self.pipeline.model.model_id if self.pipeline else "-",
                    exc,
                )
                return False
            if new_cfg.sources != self.config.sources or new_cfg.sinks != self.config.sinks:
                log.warning("reload: sources and sinks changes take effect on restart")
            assert self.pipeline is not None
            self.pipeline.threshold = new_cfg.model.threshold
            self.pipeline.swap_model(model)
            self.model_loaded_at = time.time()
            self.config = new_cfg
            log.info("reload: now scoring with %s", model.model_id)
            return True
        finally:
            self.notifier.ready()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def serve(self, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit code."""
        if install_signals:
            signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
            signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        self.start()
        interval = self.notifier.watchdog_interval()
        ping = (interval / 2.0) if interval else 5.0
        last_model_check = time.monotonic()
        model_mtime = _mtime(self.config.model.path)
        while not self._stop.wait(min(ping, 1.0)):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
                model_mtime = _mtime(self.config.model.path)
            now = time.monotonic()
            assert self.pipeline is not None
            if now - self.pipeline.heartbeat < max(3 * ping, 2.0):
                self.notifier.watchdog()  # only while the scoring loop is turning
            else:
                log.error("scoring loop stalled for %.0fs", now - self.pipeline.heartbeat)
            t0, n0 = self._last_scored
            if now - t0 >= 5.0:
                self.rate = (self.pipeline.stats.scored - n0) / (now - t0)
                self._last_scored = (now, self.pipeline.stats.scored)
                self.notifier.status(
                    f"{self.rate:,.0f} flows/s, {self.pipeline.stats.alerts:,} alerts, "
                    f"model {self.pipeline.model.model_id}"
                )
            check = self.config.model.reload_check_seconds
            if check and now - last_model_check >= check:
                last_model_check = now
                m = _mtime(self.config.model.path)
                if m != model_mtime:
                    log.info("model file changed: reloading")
                    model_mtime = m
                    self.reload()
        return self.shutdown()

    def shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping: draining the pipeline")
        deadline = time.monotonic() + self.shutdown_timeout
        for inp in self.inputs:
            inp.stop()
        drained = (
            self.pipeline.drain(max(1.0, deadline - time.monotonic())) if self.pipeline else True
        )
        if self.pipeline is not None:
            self.pipeline.stop()
        for sink in self.sinks:
            if sink is self.es_sink:
                continue
            sink.close()
        if self.es_sink is not None:
            self.es_sink.stop()
            delivered = self.es_sink.drain(max(0.5, deadline - time.monotonic()))
            if not delivered:
                log.warning("Elasticsearch unreachable: undelivered alerts stay in the spool")
            self.es_sink.close()
        if self.server is not None:
            self.server.stop()
        if not drained:
            log.error(
                "shutdown timed out with %d flows queued",
                self.pipeline.queued if self.pipeline else 0,
            )
            return 1
        log.info("stopped")
        return 0


def _offer(pipeline: Pipeline, name: str) -> Emit:
    def offer(batch: FlowBatch, ack: Ack | None = None) -> bool:
        # A Zeek connection is TCP: holding the reader back pushes back on Zeek.
        return pipeline.offer(batch, name, ack, block=True, timeout=5.0)

    return offer


def _expand(pattern: str) -> list[str]:
    import glob

    hits = glob.glob(pattern)
    return hits or [pattern]  # a file that does not exist yet is waited for


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
