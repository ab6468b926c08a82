"""The sd_notify protocol: tell systemd about readiness, reloads, status and liveness.

Owns the datagrams a ``Type=notify`` service (``systemd/netanomd.service``) sends to
``$NOTIFY_SOCKET`` (a filesystem path, or an abstract socket when it starts with ``@``):
``READY=1``, ``RELOADING=1`` with ``MONOTONIC_USEC`` (as systemd >= 253 wants for
``Type=notify-reload``), ``STOPPING=1``, ``STATUS=...`` and ``WATCHDOG=1``, plus the watchdog
interval from ``$WATCHDOG_USEC`` (honoured only when ``$WATCHDOG_PID`` is unset or names this
process).

A plain ``AF_UNIX``/``SOCK_DGRAM`` implementation of the documented protocol (sd_notify(3)),
chosen over systemd-python's ``daemon.notify`` so that the environment and the socket are
injectable in tests and the module has no C dependency. Without ``$NOTIFY_SOCKET`` every call
is a no-op; a failed send is logged at debug level and never raised, and a send never waits
(a listener that stops reading costs a dropped message, not a stalled daemon).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

SocketFactory = Callable[[], socket.socket]


def _unix_dgram_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)


def _socket_address(value: str) -> str | None:
    """The sendto() address for a ``$NOTIFY_SOCKET`` value, or None when unusable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    if value:
        log.debug("ignoring unsupported NOTIFY_SOCKET=%r", value)
    return None


class Notifier:
    """Sends sd_notify messages; safe to call from several threads and without systemd.

    ``env`` defaults to ``os.environ`` (read once, at construction, for ``NOTIFY_SOCKET``);
    ``socket_factory`` builds the datagram socket on the first send.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        socket_factory: SocketFactory | None = None,
    ) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._factory: SocketFactory = socket_factory or _unix_dgram_socket
        self.address: str | None = _socket_address(self.env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when there is a notification socket to send to."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send one datagram of newline-separated ``KEY=value`` fields; True if it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = self._factory()
                # Never wait: a listener that stopped reading (its queue holds only a few
                # datagrams) must not block the daemon's loop; that message is dropped instead.
                self._sock.sendto(payload, socket.MSG_DONTWAIT, self.address)
            except OSError as exc:
                log.debug("sd_notify %r to %r failed: %s", payload, self.address, exc)
                return False
        return True

    def ready(self) -> bool:
        """Start-up (or a reload) is complete."""
        return self.send("READY=1")

    def reloading(self) -> bool:
        """A reload has begun; finish it with ready()."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown has begun."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """One-line status shown by ``systemctl status`` (newlines would end the field)."""
        return self.send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Keep-alive ping; must arrive within watchdog_interval()."""
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds within which systemd expects WATCHDOG=1, or None when not watched."""
        usec = self.env.get("WATCHDOG_USEC", "")
        pid = self.env.get("WATCHDOG_PID", "")
        try:
            if pid and int(pid) != os.getpid():
                return None  # the watchdog is meant for another process (e.g. our parent)
            value = int(usec)
        except ValueError:
            return None
        return value / 1e6 if value > 0 else None

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
