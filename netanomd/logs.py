"""Logging set-up. Library modules only call ``logging.getLogger(__name__)``; the package
logger has a NullHandler, and only an entry point calls :func:`configure`."""

from __future__ import annotations

import logging
import os
import sys
import threading

logging.getLogger("netanomd").addHandler(logging.NullHandler())


def configure(level: str | int = "INFO", *, journald: bool | None = None) -> None:
    """Send the package's log records to journald (under systemd) or to stderr.

    ``journald=None`` picks journald when ``$JOURNAL_STREAM`` says stderr is the journal and
    the ``systemd`` Python bindings are importable.
    """
    root = logging.getLogger("netanomd")
    root.setLevel(level)
    for old in list(root.handlers):
        if not isinstance(old, logging.NullHandler):
            root.removeHandler(old)
    if journald is None:
        journald = bool(os.environ.get("JOURNAL_STREAM"))
    handler: logging.Handler | None = None
    if journald:
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="netanomd")
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    threading.excepthook = _thread_died


def _thread_died(args: threading.ExceptHookArgs) -> None:
    """A thread's uncaught exception goes to the package log (so to journald with the
    ``netanomd`` identifier), not as a bare traceback on stderr."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    logging.getLogger("netanomd").error("thread %s died", name, exc_info=exc)
