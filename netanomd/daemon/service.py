"""``netanomd run``: the sensor daemon, wired from a :class:`~netanomd.config.Config`.

Owns the life cycle: load the model, open the sinks (SQLite, Elasticsearch with its spool and
sender thread, Zeek notices), start the sources (Zeek WebSocket / Broker, followed logs, EVE
sockets, Redis), the scoring loop and the HTTP endpoint; tell systemd ``READY=1`` once all of
that is up; report ``STATUS=`` (flows/s) and ping the watchdog only while the scoring loop is
turning (a stalled pipeline stops the pings and systemd restarts the service).

Before the sources start, the scoring path is warmed up on the bundled attack captures (a
throwaway stream: :meth:`~netanomd.daemon.pipeline.Pipeline.warm_up`) and what start-up made is
frozen out of the garbage collector's reach (``gc.freeze``), so neither the first live batch nor
a later full collection walks it while alerts wait. A reload thaws the heap, collects and
freezes it again (:func:`refreeze`), so a replaced model's reference cycles are not kept for the
life of the process.

A source whose thread dies before it accepts input (a socket directory missing or not
writable) fails the start with an error naming it; READY=1 is not sent.

Signals: SIGHUP reloads the configuration and the model together — a model that fails to load
keeps the old one running and logs why (changed sources or sinks need a restart; the log says
so); every outcome is written to ``state_dir/reload.json`` (:mod:`netanomd.daemon.reload`), which
``netanomd reload`` (the unit's ``ExecReload``) waits for.
SIGTERM/SIGINT stop intake, drain the queue, flush the sinks and the Elasticsearch spool,
and exit 0 within ``shutdown_timeout`` seconds; during the start too (the handlers come
first): the start stops at its next step, closes what it opened and never sends READY=1.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netanomd.config import Config, load_config
from netanomd.daemon.http import LATENCY_BUCKETS, SCORE_BUCKETS, Histogram, Server
from netanomd.daemon.pipeline import Pipeline
from netanomd.daemon.reload import ReloadResults
from netanomd.daemon.wiring import (
    SourceContext,
    configured_sinks,
    live_sources,
    zeek_notice_sinks,
)
from netanomd.decision import Alert
from netanomd.errors import ModelError, NetanomError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.model.drift import DriftMonitor, DriftReport
from netanomd.model.reservoir import Reservoir
from netanomd.sdnotify import Notifier
from netanomd.sinks import SinkSet
from netanomd.sinks.elasticsearch import ElasticsearchSink
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.sources import LiveSource

log = logging.getLogger(__name__)

#: The longest a drift pass waits for the reservoir's thread to add the flows scored before it.
SETTLE_SECONDS = 5.0


class StartupError(NetanomError):
    """A part of the daemon failed while starting (the message names it)."""


class _StoppedWhileStarting(Exception):
    """SIGTERM/SIGINT came while the daemon was starting: it stops instead of going on."""


def refreeze() -> None:
    """Move every object alive now out of the garbage collector's generations (``gc.freeze``),
    after letting what was frozen before be collected again (``gc.unfreeze``): start-up's and a
    reload's long-lived objects are then never walked by a collection while alerts wait."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Daemon:
    def __init__(
        self,
        config_path: str | None,
        overrides: Sequence[str] = (),
        *,
        notifier: Notifier | None = None,
        shutdown_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config_path = config_path
        self.overrides = list(overrides)
        self.env = env
        self.config: Config = load_config(config_path, env=env, overrides=self.overrides)
        self.notifier = notifier or Notifier()
        self.shutdown_timeout = shutdown_timeout
        #: Wall clock (epoch seconds) of the drift passes and the model's age.
        self.clock = clock
        self.pipeline: Pipeline | None = None
        self.sinks = SinkSet()
        self.sources: list[LiveSource] = []
        #: Thread name -> (thread, its target): a thread that dies is restarted (and counted).
        self.threads: dict[str, tuple[threading.Thread, Callable[[], None]]] = {}
        self.restarts: dict[str, int] = {}
        #: Thread name -> the exception that last ended it.
        self.failures: dict[str, BaseException] = {}
        self.reloads: ReloadResults | None = None
        self.server: Server | None = None
        self.ui: Any = None  # the analyst's page (netanomd.ui.daemon), when configured
        self.latency = Histogram(LATENCY_BUCKETS)
        self.scores = Histogram(SCORE_BUCKETS)
        self.model_loaded_at = 0.0
        self.ready = False
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._reload_thread: threading.Thread | None = None
        self._last_scored = (time.monotonic(), 0)
        self.rate = 0.0

    # -- set-up ------------------------------------------------------------------------------
    def _load_model(self) -> Model:
        model = Model.load(self.config.model.path)
        self.model_loaded_at = self.clock()
        return model

    def start(self) -> None:
        cfg = self.config
        state_dir = Path(cfg.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        model = self._load_model()
        self._starting("the model is loaded")
        ids = IncidentIds()  # one naming of incidents for every sink of this daemon
        self.sinks = configured_sinks(cfg.sinks, state_dir, ids)
        p = cfg.pipeline
        self.pipeline = Pipeline(
            model,
            self.sinks,
            batch_size=p.batch_size,
            backlog_batch_size=p.backlog_batch_size,
            batch_timeout=p.batch_timeout_ms / 1000.0,
            queue_size=p.queue_size,
            on_full=p.on_full,
            dedup_window=p.dedup_window_seconds if p.dedup_community_id else None,
            threshold=cfg.model.threshold,
            on_batch=self._observe,
            quarantine=state_dir / "quarantine.jsonl",
        )
        m = cfg.model
        if m.reservoir_per_day:  # what `netanomd retrain` trains on (netanomd.model.reservoir)
            self.pipeline.reservoir = Reservoir(
                state_dir / "reservoir",
                per_day=m.reservoir_per_day,
                keep_days=m.reservoir_days,
                max_bytes=m.reservoir_max_mb << 20,
                drift=DriftMonitor(every=m.drift_check_seconds),
            )
        self._warm_up()
        self._starting("the scoring path is warmed up")
        self.sources = live_sources(cfg.sources, SourceContext(self.pipeline, state_dir))
        if cfg.sinks.zeek_notice.enabled:
            for sink in zeek_notice_sinks(self.sources, ids):
                self.sinks.add(sink)
        self.sinks.open()
        if cfg.sinks.metrics.enabled:
            self.server = Server(self, cfg.sinks.metrics)
            self.server.start()
        if cfg.ui.enabled:
            from netanomd.ui.daemon import attach

            self.ui = attach(cfg, self.pipeline)
        self._spawn("pipeline", self.pipeline.run)
        for src in self.sources:
            self._spawn(src.name, src.run)
        self._await_sources()
        self._starting("the sources are started")
        self.reloads = ReloadResults(state_dir)
        self.reloads.started(model.model_id)
        refreeze()
        self.ready = True
        self.notifier.ready()
        self.notifier.status(f"model {model.model_id}; {len(self.sources)} sources")
        log.info(
            "netanomd ready: model %s, %d sources, %d sinks",
            model.model_id,
            len(self.sources),
            len(self.sinks),
        )

    def _warm_up(self) -> None:
        """Score the bundled attack captures on a throwaway stream (see the module doc); a
        model that cannot score them is logged and started cold."""
        from netanomd.data import attack_files
        from netanomd.sources import ReadStats
        from netanomd.sources.files import read_batches

        assert self.pipeline is not None
        started = time.process_time()
        files = attack_files()
        try:
            n = self.pipeline.warm_up(read_batches(files, ReadStats(), batch_size=256))
        except Exception as exc:  # the live stream is untouched: start, just colder
            log.warning("warming up on %s failed (%r); starting cold", files, exc)
            return
        log.debug("warmed up on %d flows (%.2f CPU-s)", n, time.process_time() - started)

    @property
    def es_sink(self) -> ElasticsearchSink | None:
        """The Elasticsearch sink, when configured (its spool and counters go to metrics)."""
        return next((s for s in self.sinks if isinstance(s, ElasticsearchSink)), None)

    def _await_sources(self, timeout: float = 10.0) -> None:
        """Wait for every source to accept input (sockets must exist before Suricata
        connects). A source whose thread died on the way (a socket directory missing or not
        writable...) fails the start: READY=1 is never sent for a daemon that is blind. One
        that is merely not connected yet (Zeek not up) is waited for ``timeout`` seconds and
        then left to keep trying."""
        deadline = time.monotonic() + timeout
        for src in self.sources:
            t = self.threads[src.name][0]
            while not src.ready.wait(0.05) and t.is_alive() and time.monotonic() < deadline:
                self._starting(f"waiting for source {src.name}")
            if not src.ready.is_set() and not t.is_alive():
                exc = self.failures.get(src.name)
                why = f"{type(exc).__name__}: {exc}" if exc is not None else "its thread ended"
                path = getattr(src, "path", None)
                at = f" ({path})" if path is not None else ""
                raise StartupError(f"source {src.name}{at} failed to start: {why}")

    def _starting(self, where: str) -> None:
        """Give up starting when a stop was asked for (READY=1 is never sent)."""
        if self._stop.is_set():
            log.info("stop requested while starting (%s): stopping", where)
            raise _StoppedWhileStarting(where)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                self.failures[name] = exc
                raise  # logged by the thread hook (netanomd.logs)

        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        self.threads[name] = (t, target)

    def _supervise(self) -> None:
        """Restart a thread that died while the daemon runs (its exception was logged by
        :func:`netanomd.logs` through the thread hook)."""
        for name, (t, target) in list(self.threads.items()):
            if not t.is_alive() and not self._stop.is_set():
                self.restarts[name] = self.restarts.get(name, 0) + 1
                log.error(
                    "%s stopped unexpectedly; restarting it (%d so far)", name, self.restarts[name]
                )
                self._spawn(name, target)

    def _observe(
        self, batch: FlowBatch, scores: np.ndarray, alerts: list[Alert], arrived: float
    ) -> None:
        self.scores.observe(scores)
        self.latency.observe(np.array([time.monotonic() - arrived]))

    # -- running -----------------------------------------------------------------------------
    def drift_pass(self) -> DriftReport | None:
        """Measure drift when ``model.drift_check_seconds`` passed since the last pass (the
        loop calls this every turn); returns the pass's report, None when none was due or
        the daemon keeps no reservoir. A crossing of the threshold is logged as a warning.
        A pass measures every flow scored before it: the batches the reservoir's thread is
        still gathering are added first."""
        p = self.pipeline
        if p is None or p.reservoir is None:
            return None
        try:
            now = self.clock()
            if p.sampler is not None and p.reservoir.recent.due(p.model, now):
                p.sampler.settle(SETTLE_SECONDS)
            return p.reservoir.recent.check(p.model, now)
        except Exception:  # measuring must never stop the loop that pings the watchdog
            log.exception("drift pass failed")
            return None

    def health(self) -> dict[str, Any]:
        """Ready only while the scoring loop runs, every sink writes and at least one source
        is up; each source says whether it is up and when it last delivered flows."""
        p = self.pipeline
        sources = {}
        for src in self.sources:
            t = self.threads.get(src.name)
            sources[src.name] = {
                "up": bool(t and t[0].is_alive() and src.ready.is_set()),
                "last_flow": p.stats.last_received.get(src.name) if p else None,
                "restarts": self.restarts.get(src.name, 0),
            }
        scorer = self.threads.get("pipeline")
        scoring = bool(scorer and scorer[0].is_alive())
        failing = dict(p.sinks.failing) if p else {}
        up = any(s["up"] for s in sources.values()) or not sources
        problems = (
            ([] if scoring else ["scoring loop not running"])
            + [f"sink {name} cannot write" for name in failing]
            + ([] if up else ["no source is up"])
        )
        return {
            "ready": self.ready and p is not None and not problems,
            "problems": problems,
            "model": p.model.model_id if p else None,
            "queued": p.queued if p else 0,
            "flows_per_second": round(self.rate, 1),
            "sources": sources,
            "sinks_failing": failing,
            "quarantined": p.stats.quarantined if p else 0,
        }

    def reload(self) -> bool:
        """SIGHUP: re-read the configuration and the model; keep the old ones on failure. The
        outcome goes to ``state_dir/reload.json`` for ``netanomd reload`` (systemctl reload)."""
        started = time.time()
        ok, error = False, "reload failed unexpectedly"
        try:
            ok, error = self._reload_now()
        finally:
            if self.reloads is not None:
                model = self.pipeline.model.model_id if self.pipeline else None
                self.reloads.finished(started, ok, model, error)
        return ok

    def _reload_now(self) -> tuple[bool, str]:
        self.notifier.reloading()
        try:
            try:
                new_cfg = load_config(self.config_path, env=self.env, overrides=self.overrides)
            except NetanomError as exc:
                log.error("reload: configuration rejected, keeping the running one:\n%s", exc)
                return False, f"configuration rejected: {exc}"
            try:
                model = Model.load(new_cfg.model.path)
            except (ModelError, OSError) as exc:
                log.error(
                    "reload: model %s rejected, keeping %s: %s",
                    new_cfg.model.path,
                    self.pipeline.model.model_id if self.pipeline else "-",
                    exc,
                )
                return False, f"model {new_cfg.model.path} rejected: {exc}"
            if new_cfg.sources != self.config.sources or new_cfg.sinks != self.config.sinks:
                log.warning("reload: sources and sinks changes take effect on restart")
            assert self.pipeline is not None
            self.pipeline.threshold = new_cfg.model.threshold
            self.pipeline.swap_model(model)
            refreeze()  # the replaced model's cycles become collectable; the new one is frozen
            self.model_loaded_at = self.clock()
            self.config = new_cfg
            log.info("reload: now scoring with %s", model.model_id)
            return True, ""
        finally:
            self.notifier.ready()

    def _reloading(self) -> bool:
        t = self._reload_thread
        return t is not None and t.is_alive()

    def _reload_in_background(self) -> None:
        """Load off the main loop, which goes on pinging the watchdog while a model loads."""
        self._reload_thread = threading.Thread(target=self.reload, name="reload", daemon=True)
        self._reload_thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def serve(self, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit code. The
        handlers are installed before anything starts: a SIGTERM while starting (a model
        loading, a source not up yet) stops the daemon cleanly at the next step, without
        READY=1."""
        if install_signals:
            signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
            signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        try:
            self.start()
        except _StoppedWhileStarting:
            return self.shutdown()
        except BaseException:
            try:
                self.shutdown()  # close what was opened; the error says what failed
            except Exception:
                log.debug("cleaning up after a failed start", exc_info=True)
            raise
        interval = self.notifier.watchdog_interval()
        ping = (interval / 2.0) if interval else 5.0
        last_model_check = time.monotonic()
        model_mtime = _mtime(self.config.model.path)
        while not self._stop.wait(min(ping, 1.0)):
            self._supervise()
            if self._reload.is_set() and not self._reloading():
                self._reload.clear()
                model_mtime = _mtime(self.config.model.path)
                self._reload_in_background()
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
            self.drift_pass()
            check = self.config.model.reload_check_seconds
            if check and now - last_model_check >= check:
                last_model_check = now
                m = _mtime(self.config.model.path)
                if m != model_mtime and not self._reloading():
                    log.info("model file changed: reloading")
                    model_mtime = m
                    self._reload_in_background()
        return self.shutdown()

    def shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping: draining the pipeline")
        deadline = time.monotonic() + self.shutdown_timeout
        # Intake stops first and the sources last: the Zeek links still carry the verdicts of
        # the flows being drained.
        if self.pipeline is not None:
            self.pipeline.stop_intake()
        drained = (
            self.pipeline.drain(max(1.0, deadline - time.monotonic())) if self.pipeline else True
        )
        if self.pipeline is not None:
            self.pipeline.stop()
        self.sinks.close(max(0.5, deadline - time.monotonic()))
        for src in self.sources:
            src.stop()
        if self.server is not None:
            self.server.stop()
        if self.ui is not None:
            self.ui.stop()
        if not drained:
            log.error(
                "shutdown timed out with %d flows queued",
                self.pipeline.queued if self.pipeline else 0,
            )
            return 1
        log.info("stopped")
        return 0


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
