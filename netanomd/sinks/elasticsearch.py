"""Elasticsearch sink: alerts and incidents as ECS documents, delivered through an on-disk spool.

``write()`` only turns alerts into documents and appends them to the :class:`~netanomd.spool.Spool`
(scoring never waits on Elasticsearch); ``write_incidents()`` does the same with incidents, each
under its stable id (:mod:`netanomd.sinks.incident_ids`) and marked for an ``index`` (replace)
into the incident alias, since an incident's document is updated in place as it grows, which a
data stream refuses. Alerts are ``create``d (never replaced) in their data stream. A sender
(:meth:`ElasticsearchSink.deliver_once`, run in a loop by :meth:`start`) takes the oldest
spooled documents and bulk-``create``s (or ``index``es) them with the official client's
``helpers.streaming_bulk`` (``raise_on_error=False``, so every item is looked at): 200, 201 and
409 (already there: the ``_id`` is the alert's deterministic id) count as delivered; 429 and
5xx items, whole-request errors and connection errors are retried with capped
exponential backoff; any other item error (a mapping conflict) goes to a dead-letter JSONL file
with the reason, so one bad document never holds back the others. The spool cursor moves only
past documents that were delivered or dead-lettered.

An incident is replaced in the concrete index that already holds it, not through the alias:
after the alias rolls over, an ``index`` into the alias would leave the old copy behind in the
previous index (two documents for one incident in Kibana). The sink remembers each incident's
index from the bulk answers; for an incident it has not written since it started, one ``ids``
search over the alias finds it (or not: then the alias's write index takes it).

A retracted incident (an "anomalous flows" incident whose alerts all went to a named incident
that covers them; :attr:`~netanomd.behaviour.incidents.Incident.retracted`) becomes a bulk
``delete`` of its id in that same home index, spooled like every other document: it survives an
outage and stays behind the ``index`` actions of the same id (one bulk request keeps their
order). A delete answered 404 (``not_found``: it was never written, or its index is gone) is
done, not an error.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, helpers

from netanomd.decision import Alert
from netanomd.ecs import ObserverInfo, alert_document, data_alias, data_stream, incident_document
from netanomd.fsutil import open_append
from netanomd.sinks.incident_ids import IncidentIds
from netanomd.spool import Spool

if TYPE_CHECKING:
    from netanomd.behaviour.incidents import Incident

log = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 500, 502, 503, 504})


def why(exc: BaseException) -> str:
    """Why a request failed, as precisely as the exception's chain says: a TLS problem names
    the check that failed (``certificate verify failed: Hostname mismatch, ...``)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS: certificate verify failed: {e.verify_message}"
        if isinstance(e, ssl.SSLError):
            return f"TLS: {e.reason or e}"
        linked = (e.__cause__, e.__context__, *getattr(e, "errors", ()), *e.args)
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return f"{type(exc).__name__}: {str(exc)[:300]}"


#: Spooled metadata beside a document's body: its id, and for incidents the bulk operation
#: (``index``, or ``delete`` with no body for a retracted one) and the index (alerts:
#: ``create`` into the alert data stream).
_META = ("_id", "_op", "_index")
#: Incidents whose concrete index the sink remembers (the oldest are forgotten and searched
#: for again when they grow).
_HOMES_KEPT = 100_000
#: The bulk operations on incidents, which go to the concrete index holding the incident.
_HOMED = frozenset({"index", "delete"})


class ElasticsearchSink:
    """Delivers alerts to ``logs-netanomd.alert-<namespace>`` and incidents to
    ``logs-netanomd.incident-<namespace>`` (implements ``IncidentSink``)."""

    name = "elasticsearch"

    def __init__(
        self,
        client: Elasticsearch,
        spool: Spool,
        observer: ObserverInfo,
        *,
        namespace: str = "default",
        dead_letter: str | Path | None = None,
        batch_size: int = 500,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        ids: IncidentIds | None = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.observer = observer
        self.ids = ids if ids is not None else IncidentIds(observer.name)
        self.index = data_stream(namespace)
        self.incident_index = data_alias(namespace)
        self.namespace = namespace
        self.dead_letter = Path(dead_letter) if dead_letter else spool.dir / "dead-letter.jsonl"
        self.batch_size = batch_size
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self.sleep = sleep
        self.sent = 0
        self.duplicates = 0
        self.retries = 0
        self.dead_lettered = 0
        #: Retracted incidents delivered (deleted, or found never written).
        self.deleted = 0
        #: Unexpected sender errors (the sender goes on).
        self.errors = 0
        self._failures = 0
        #: ids dead-lettered from the batch being retried (so a retry does not letter twice)
        self._lettered: set[str] = set()
        #: incident id -> the concrete index holding it (insertion order: oldest first)
        self._homes: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- Sink ------------------------------------------------------------------------------
    def write(self, alerts: Sequence[Alert]) -> None:
        now = self.clock()
        docs = []
        for a in alerts:
            doc = alert_document(a, self.observer, self.namespace, now=now)
            doc["_id"] = a.alert_id
            docs.append(doc)
        self.spool.append(docs)

    def write_incidents(self, incidents: Sequence[Incident]) -> None:
        if not incidents:
            return
        now = self.clock()
        docs = []
        for inc in incidents:
            sid = self.ids(inc)
            if inc.retracted:
                docs.append({"_id": sid, "_op": "delete", "_index": self.incident_index})
                continue
            doc = incident_document(inc, sid, self.observer, self.namespace, now=now)
            doc |= {"_id": sid, "_op": "index", "_index": self.incident_index}
            docs.append(doc)
        self.spool.append(docs)

    def flush(self) -> None:
        """Try to deliver what is spooled (at most 30 s); what is left stays spooled."""
        self.drain(30.0)

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver what is spooled, for at most ``timeout`` seconds; True if all went out."""
        deadline = self.clock() + timeout
        while self.clock() < deadline:
            if self.deliver_once() == 0 and not self.spool.peek(1)[0]:
                return True
        return not self.spool.peek(1)[0]

    def open(self) -> None:
        """Warn about hosts whose certificate is not verified; start the sender thread (see
        :meth:`start`)."""
        for node in self.client.transport.node_pool.all():
            cfg = node.config
            if cfg.scheme == "https" and not cfg.verify_certs:
                log.warning(
                    "elasticsearch https://%s:%d: the certificate is not verified "
                    "(verify_certs: false): anyone on the path can read the alerts and answer "
                    "for the server; use ca_file instead",
                    cfg.host,
                    cfg.port,
                )
        self.start()

    def close(self, timeout: float = 30.0) -> bool:
        """Stop the sender, deliver what is spooled for at most ``timeout`` seconds, close the
        spool; False if documents stay spooled (they go out on the next start)."""
        self.stop()
        delivered = self.drain(timeout)
        if not delivered:
            log.warning(
                "Elasticsearch unreachable: undelivered alerts stay in the spool %s",
                self.spool.dir,
            )
        self.spool.close()
        return delivered

    # -- sending ---------------------------------------------------------------------------
    def backoff(self) -> float:
        return float(min(self.max_backoff, self.initial_backoff * 2 ** max(self._failures - 1, 0)))

    def deliver_once(self) -> int:
        """Send one batch from the spool; returns how many documents left it (delivered or
        dead-lettered). On a retryable failure sleeps the backoff and returns 0."""
        docs, end = self.spool.peek(self.batch_size)
        if not docs:
            return 0
        try:
            self._find_homes([d["_id"] for d in docs if d.get("_op") in _HOMED])
        except (TransportError, ApiError) as exc:
            log.warning(
                "elasticsearch unreachable (%s); %d documents stay spooled", why(exc), len(docs)
            )
            self._failures += 1
            self.retries += 1
            self.sleep(self.backoff())
            return 0
        actions = []
        for d in docs:
            op = d.get("_op", "create")
            index = d.get("_index", self.index)
            if op in _HOMED:
                index = self._homes.get(d["_id"], index)
            action: dict[str, Any] = {"_op_type": op, "_index": index, "_id": d["_id"]}
            if op != "delete":
                action["_source"] = {k: v for k, v in d.items() if k not in _META}
            actions.append(action)
        retry = False
        dead: list[tuple[dict[str, Any], Any]] = []
        try:
            # one answer per action, in order (an index and a delete may share an _id)
            for doc, (ok, item) in zip(
                docs,
                helpers.streaming_bulk(
                    self.client,
                    actions,
                    chunk_size=len(actions),
                    max_retries=0,
                    raise_on_error=False,
                    raise_on_exception=False,
                ),
                strict=False,
            ):
                info: dict[str, Any] = next(iter(item.values()), {})
                status = int(info.get("status", 0) or 0)
                if "delete" in item and (ok or (status == 404 and "exception" not in info)):
                    # deleted, or nothing to delete (never written, or its index is gone); a
                    # whole request answered 404 (it carries the exception) says nothing of it
                    self.deleted += 1
                    self._homes.pop(str(info.get("_id")), None)
                elif ok or status in (200, 201):
                    self.sent += 1
                    if "index" in item and "_index" in info:
                        self._remember(str(info.get("_id")), str(info["_index"]))
                elif "index" in item and status in (403, 404) and info.get("_id") in self._homes:
                    # its index was closed, blocked or deleted since: write it anew via the alias
                    del self._homes[str(info.get("_id"))]
                    retry = True
                elif status == 409:
                    self.duplicates += 1
                elif status in RETRYABLE or status == 0:
                    retry = True
                elif info.get("_id") not in self._lettered:
                    dead.append((doc, info.get("error")))
        except (TransportError, ApiError) as exc:
            log.warning(
                "elasticsearch unreachable (%s); %d documents stay spooled", why(exc), len(docs)
            )
            retry = True
        if dead:
            self._dead_letter(dead)
        if retry:
            # Everything that did arrive answers 409 next time (alerts), is replaced by the
            # same version (incidents) or answers 404 (deleted ones): resending is safe.
            self._failures += 1
            self.retries += 1
            self.sleep(self.backoff())
            return 0
        self._failures = 0
        self._lettered.clear()
        self.spool.ack(end)
        return len(docs)

    def _remember(self, incident_id: str, index: str) -> None:
        self._homes.pop(incident_id, None)
        self._homes[incident_id] = index
        while len(self._homes) > _HOMES_KEPT:
            del self._homes[next(iter(self._homes))]

    def _find_homes(self, incident_ids: list[str]) -> None:
        """Look up, with one ``ids`` search over the incident alias, the indices of incidents
        this sink has not written since it started (they may sit in an index the alias has
        rolled over from). Not found (new, or its index deleted): the alias's write index."""
        unknown = sorted({i for i in incident_ids if i not in self._homes})
        if not unknown:
            return
        try:
            found = self.client.search(
                index=self.incident_index,
                query={"ids": {"values": unknown}},
                source=False,
                size=len(unknown),
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except ApiError as exc:
            if exc.meta.status == 404:  # no alias yet: the bulk answer says what to do
                return
            raise
        for hit in found["hits"]["hits"]:
            self._remember(str(hit["_id"]), str(hit["_index"]))

    def _dead_letter(self, dead: list[tuple[dict[str, Any], Any]]) -> None:
        with open_append(self.dead_letter) as fh:
            for doc, error in dead:
                fh.write(orjson.dumps({"reason": error, "document": doc}) + b"\n")
                hint = ""
                if doc.get("_op") in _HOMED:  # an incident: its index needs 'es setup'
                    hint = f" (has 'netanomd es setup' created the alias {self.incident_index}?)"
                log.error("elasticsearch rejected document %s: %s%s", doc.get("_id"), error, hint)
                self._lettered.add(str(doc.get("_id")))
        self.dead_lettered += len(dead)

    def start(self) -> None:
        """Run the sender in a background thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    sent = self.deliver_once()
                except Exception:  # the sender must outlive any surprise; the spool keeps all
                    log.exception("elasticsearch sender: unexpected error; retrying")
                    self.errors += 1
                    sent = 0
                    self._stop.wait(self.backoff())
                if sent == 0:
                    self._stop.wait(0.2)

        self._thread = threading.Thread(target=loop, name="es-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
