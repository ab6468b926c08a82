"""``netanomd zeek listen``: connect to Zeek and print the flows it exports (and their scores).

For operators checking an installation: is the Zeek package publishing, does the daemon
receive over the chosen transport, and do verdicts make it back (with ``--model``, anomalous
flows are answered with ``NetAnom::verdict`` and show up in Zeek's notice.log).

While Zeek cannot be reached it says once what it is waiting for (which listener, and what in
``local.zeek`` provides it) and why the first attempt failed; the link keeps retrying, and a
repeat of the same failure is not logged again (:class:`_Waiting`). ``--wait SECONDS`` gives up.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from typing import Any

from netanomd.config import ZeekBrokerSourceConfig, ZeekWsSourceConfig
from netanomd.decision import Alert
from netanomd.errors import TransportError
from netanomd.flow import FlowBatch
from netanomd.model import Model
from netanomd.sinks.zeek_notice import ZeekNoticeSink
from netanomd.sources import Ack
from netanomd.sources.zeek_link import zeek_source
from netanomd.zeek import api


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("zeek", help="talk to a Zeek running the package")
    zsub = p.add_subparsers(dest="zeek_command", required=True)
    lp: argparse.ArgumentParser = zsub.add_parser(
        "listen", help="connect to Zeek and print received flows (and scores with --model)"
    )
    lp.add_argument("--transport", choices=("ws", "broker"), default="ws")
    lp.add_argument(
        "--url",
        default="ws://127.0.0.1:27759",
        help="WebSocket URL of Zeek (ws or wss; default ws://127.0.0.1:27759)",
    )
    lp.add_argument("--ca-file", help="CA certificate(s) to verify a wss:// Zeek with")
    lp.add_argument(
        "--insecure", action="store_true", help="do not verify the wss:// server certificate"
    )
    lp.add_argument(
        "--connect",
        metavar="HOST:PORT",
        help="broker: peer with Zeek's Broker listener (default 127.0.0.1:9999)",
    )
    lp.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="broker: listen for Zeek to peer with us (Broker::peer in local.zeek) instead",
    )
    lp.add_argument(
        "--topic",
        action="append",
        help=f"topic prefix to subscribe to (default {api.FLOWS_TOPIC}; repeatable)",
    )
    lp.add_argument("--verdict-topic", default=api.VERDICTS_TOPIC)
    lp.add_argument("--model", "-m", metavar="PATH", help="score flows with this model")
    lp.add_argument(
        "--no-verdicts",
        action="store_true",
        help="with --model: print scores but send nothing back to Zeek",
    )
    lp.add_argument("--count", type=int, default=0, help="exit after this many flows")
    lp.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="give up (exit 2) when Zeek is not connected after this long (default: keep trying)",
    )
    lp.set_defaults(func=run)


#: Where each transport logs its connection failures.
_LINK_LOGGERS = ("netanomd.sources.zeek_ws", "netanomd.sources.zeek_broker")


class _Waiting(logging.Filter):
    """Passes a link's connection failure once and holds back its repeats (the same message
    but for numbers, such as the retry delay); remembers the last one for the summary."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None
        self.shape: str | None = None
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        shape = re.sub(r"\d+(\.\d+)?", "N", message)
        if shape == self.shape:
            self.held += 1
            return False
        self.shape = shape
        self.last = re.sub(r"; reconnecting in [\d.]+s$", "", message)
        return True


def waits_for(args: argparse.Namespace) -> tuple[str, str]:
    """Where ``zeek listen`` connects and, in words, what must be running there."""
    if args.transport == "ws":
        return args.url, (
            "the netanomd Zeek package's WebSocket listener (Zeek >= 5; local.zeek: "
            "@load packages; NetAnom::websocket_addr/websocket_port, default 127.0.0.1:27759)"
        )
    if args.listen:
        return f"broker listening on {args.listen}", (
            "Zeek to peer with us (Broker::peer in local.zeek, to this address)"
        )
    connect = args.connect or "127.0.0.1:9999"
    return f"broker peer {connect}", (
        "Zeek's native Broker listener (local.zeek: redef NetAnom::listen_broker = T; "
        "NetAnom::broker_addr/broker_port, default 127.0.0.1:9999)"
    )


class _Printer:
    def __init__(self, model: Model | None, limit: int, done: threading.Event) -> None:
        self.model = model
        self.limit = limit
        self.done = done
        self.seen = 0
        self.notices: ZeekNoticeSink | None = None

    def __call__(
        self, batch: FlowBatch, ack: Ack | None = None, *, arrived: float | None = None
    ) -> bool:
        """Score and print a batch (the link's ``emit``); acknowledged once printed."""
        if self.limit and self.seen >= self.limit:
            return False
        if self.limit:
            batch = batch.slice(0, self.limit - self.seen)
        scores = None
        alerts: dict[str, Alert] = {}
        if self.model is not None:
            scores, found = self.model.run(batch)
            alerts = {a.flow.uid: a for a in found}
            if self.notices is not None:
                self.notices.write(found)
        lines = []
        for i, f in enumerate(batch.records()):
            line = f"{f.uid}  {f.orig_h}:{f.orig_p} -> {f.resp_h}:{f.resp_p} {f.proto}"
            if f.service:
                line += f"/{f.service}"
            line += f" {f.conn_state or '-'}"
            if scores is not None:
                line += f"  score={scores[i]:.3f}"
                a = alerts.get(f.uid)
                if a is not None:
                    line += f"  ANOMALOUS: {a.reason}"
            lines.append(line)
        print("\n".join(lines), flush=True)
        self.seen += len(batch)
        if ack is not None:
            ack()
        if self.limit and self.seen >= self.limit:
            self.done.set()
        return True


def run(args: argparse.Namespace) -> int:
    model = Model.load(args.model) if args.model else None
    done = threading.Event()
    printer = _Printer(model, args.count, done)
    topics = tuple(args.topic or [api.FLOWS_TOPIC])
    where, what = waits_for(args)
    cfg: ZeekWsSourceConfig | ZeekBrokerSourceConfig
    if args.transport == "ws":
        cfg = ZeekWsSourceConfig("zeek_ws", args.url, args.ca_file, args.insecure, topics)
    else:
        connect = None if args.listen else (args.connect or "127.0.0.1:9999")
        cfg = ZeekBrokerSourceConfig("zeek_broker", connect, args.listen, topics)
    transport = zeek_source(cfg, printer, name="zeek", verdict_topic=args.verdict_topic)
    if model is not None and not args.no_verdicts:
        printer.notices = ZeekNoticeSink(transport)
    print(f"listening for {', '.join(topics)} via {where} (Ctrl-C to stop)", file=sys.stderr)

    failed: list[BaseException] = []

    def serve() -> None:
        try:
            transport.run()
        except Exception as exc:  # reported in the main thread
            failed.append(exc)

    waiting = _Waiting()
    loggers = [logging.getLogger(name) for name in _LINK_LOGGERS]
    for logger in loggers:
        logger.addFilter(waiting)
    worker = threading.Thread(target=serve, name="zeek-transport", daemon=True)
    worker.start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    started = time.monotonic()
    said_waiting = said_connected = gave_up = False
    try:
        while not done.wait(0.2):
            if not worker.is_alive():
                break
            if transport.ready.is_set() and transport.counters.connects:
                if not said_connected:
                    print(f"connected: {where}", file=sys.stderr)
                said_connected, said_waiting = True, False
                continue
            waited = time.monotonic() - started
            if not said_waiting and not said_connected and waited >= 1.0:
                print(
                    f"waiting for {what} at {where}; retrying until it answers",
                    file=sys.stderr,
                )
                said_waiting = True
            if args.wait and waited >= args.wait and not said_connected:
                gave_up = True
                break
    finally:
        for logger in loggers:
            logger.removeFilter(waiting)
    transport.flush(5.0)
    transport.stop()
    worker.join(timeout=5)
    if failed:
        raise TransportError(f"{where}: {failed[0]}") from failed[0]
    if gave_up:
        raise TransportError(
            f"no Zeek at {where} after {args.wait:g} s: waiting for {what}"
            + (f"; {waiting.held + 1} attempts, the last: {waiting.last}" if waiting.last else "")
        )
    c = transport.counters
    print(
        f"{c.flows} flows in {c.messages} messages, {c.malformed} malformed, "
        f"{c.verdicts_sent} verdicts sent, {c.connects} connects",
        file=sys.stderr,
    )
    return 0
