"""Serving the page with uvicorn: on its own (``netanomd ui``) or in a thread beside the daemon.

Owns :func:`serve` (blocking, until interrupted) and :class:`Background` (a server in a daemon
thread, started and stopped by its owner). TLS when a certificate and key are given.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import uvicorn

from netanomd.ui.app import UiSettings, build_app

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listen:
    """Where and how to listen."""

    host: str = "127.0.0.1"
    port: int = 8765
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def _config(settings: UiSettings, listen: Listen) -> uvicorn.Config:
    return uvicorn.Config(
        build_app(settings),
        host=listen.host,
        port=listen.port,
        ssl_certfile=listen.tls_cert,
        ssl_keyfile=listen.tls_key,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,  # a browser's idle keep-alive must not hold up a stop
    )


def serve(settings: UiSettings, listen: Listen) -> None:
    """Serve until interrupted."""
    uvicorn.Server(_config(settings, listen)).run()


class Background:
    """The page served from a thread (the daemon's ``ui:`` section)."""

    def __init__(self, settings: UiSettings, listen: Listen) -> None:
        self.server = uvicorn.Server(_config(settings, listen))
        self.listen = listen
        self._thread = threading.Thread(target=self.server.run, name="netanomd-ui", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError("the analyst page did not start listening")
            time.sleep(0.02)
        log.info("analyst page on %s://%s:%d", self.listen.scheme, self.listen.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (the one asked for, or the one chosen for port 0)."""
        servers = getattr(self.server, "servers", [])
        for s in servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return self.listen.port

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
