"""A small Elasticsearch HTTP server for tests, following the documented REST API the official
client uses: ``GET /`` with ``X-Elastic-Product: Elasticsearch``, ``compatible-with`` media
types (a request without one is refused, as ES does for an unknown media type), ``_bulk`` NDJSON
with per-item results (``create`` -> 201, existing ``_id`` -> 409; ``index`` -> 201 created or
200 updated, refused with 400 by a data stream; ``delete``, an action line with no source
line -> 200 ``deleted``, 404 ``not_found`` when the id is not there, 404
``index_not_found_exception`` when the index is not), ``_index_template`` (its composed component
templates must exist or be listed as ignorable), ``_component_template``, ``_ilm/policy``, index
creation with aliases (``PUT /<index>``, ``HEAD /_alias/<name>``; a bulk write to an alias goes
to its write index), ``POST /<alias>/_rollover`` (a new write index ``…-00000N+1``; the old ones
stay readable through the alias), ``_search`` with an ``ids`` query over an index or alias
(hits name their concrete ``_index``), plus fault injection: per-item 429s and mapping errors,
whole-request errors, slow responses, and stop/start (connection refused while stopped).

A bulk target that is neither a created index nor an alias is a data stream unless the
highest-priority template matching its name has no ``data_stream`` (then it is auto-created as
a regular index); a name matching no stored template counts as a data stream, as Elastic's
built-in ``logs-*-*`` template makes it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MEDIA = re.compile(r"application/vnd\.elasticsearch\+(x-ndjson|json); ?compatible-with=(8|9)")


class FakeElasticsearch:
    def __init__(self, version: str = "9.1.0") -> None:
        self.version = version
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.creates: Counter[str] = Counter()  # _id -> successful creates (must end at 1)
        self.templates: dict[str, Any] = {}
        self.component_templates: dict[str, Any] = {}
        self.policies: dict[str, Any] = {}
        self.indices: dict[str, Any] = {}  # regular indices: name -> creation body
        self.aliases: dict[str, str] = {}  # alias -> its write index
        self.members: dict[str, list[str]] = {}  # alias -> every index it points to
        self.indexed: Counter[str] = Counter()  # _id -> successful index ops
        self.deleted: Counter[str] = Counter()  # _id -> documents deleted
        self.throttle_items: Counter[str] = Counter()  # _id -> how many more 429s to give
        self.reject_ids: set[str] = set()  # _ids that fail with a mapping error
        self.fail_requests = 0  # next N bulk requests answer 503
        self.delay = 0.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> str:
        """Listen (TLS with ``ssl_context``); returns the ``http://`` or ``https://`` URL."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, product: bool = True) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/vnd.elasticsearch+json;compatible-with=9"
                )
                if product:
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length", 0))
                return self.rfile.read(n) if n else b""

            def do_HEAD(self) -> None:
                path = self.path.split("?")[0]
                found = not path.startswith("/_alias/") or path[8:] in fake.aliases
                self.send_response(200 if found else 404)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, dict(self.headers)))
                if self.path.split("?")[0] == "/":
                    self._reply(
                        200,
                        {
                            "name": "fake",
                            "cluster_name": "test",
                            "version": {"number": fake.version, "build_flavor": "default"},
                            "tagline": "You Know, for Search",
                        },
                    )
                else:
                    self._reply(
                        404, {"error": {"type": "resource_not_found_exception"}, "status": 404}
                    )

            def do_PUT(self) -> None:
                self._write("PUT")

            def do_POST(self) -> None:
                self._write("POST")

            def _write(self, method: str) -> None:
                body = self._body()
                fake.requests.append((method, self.path, dict(self.headers)))
                time.sleep(fake.delay)
                ctype = self.headers.get("Content-Type", "")
                if not MEDIA.fullmatch(ctype.replace(" ", "")) and not MEDIA.fullmatch(ctype):
                    self._reply(
                        406,
                        {
                            "error": {
                                "type": "media_type_header_exception",
                                "reason": f"Invalid media-type value on header "
                                f"[Content-Type]: {ctype}",
                            },
                            "status": 406,
                        },
                    )
                    return
                path = self.path.split("?")[0]
                if path == "/_bulk":
                    if "x-ndjson" not in ctype:
                        self._reply(400, {"error": "bulk needs x-ndjson", "status": 400})
                        return
                    if fake.fail_requests > 0:
                        fake.fail_requests -= 1
                        self._reply(
                            503, {"error": {"type": "unavailable_shards_exception"}, "status": 503}
                        )
                        return
                    self._reply(200, fake.bulk(body))
                elif path.startswith("/_index_template/"):
                    self._reply(*fake.put_index_template(path.rsplit("/", 1)[1], json.loads(body)))
                elif path.startswith("/_component_template/"):
                    fake.component_templates[path.rsplit("/", 1)[1]] = json.loads(body)
                    self._reply(200, {"acknowledged": True})
                elif path.startswith("/_ilm/policy/"):
                    fake.policies[path.rsplit("/", 1)[1]] = json.loads(body)
                    self._reply(200, {"acknowledged": True})
                elif re.fullmatch(r"/[^/_][^/]*/_rollover", path):
                    self._reply(*fake.rollover(path.split("/")[1]))
                elif re.fullmatch(r"/[^/_][^/]*/_search", path):
                    self._reply(*fake.search(path.split("/")[1], json.loads(body or b"{}")))
                elif method == "PUT" and re.fullmatch(r"/[a-z0-9][^/]*", path):
                    status, reply = fake.create_index(path[1:], json.loads(body or b"{}"))
                    self._reply(status, reply)
                else:
                    self._reply(404, {"error": {"type": "unknown"}, "status": 404})

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        if ssl_context is not None:
            sock = self._server.socket
            self._server.socket = ssl_context.wrap_socket(sock, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- templates -------------------------------------------------------------------------
    def put_index_template(self, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """As ES: every component template composed must exist, or be listed as one that may
        be missing."""
        ignore = set(body.get("ignore_missing_component_templates", []))
        missing = [
            c
            for c in body.get("composed_of", [])
            if c not in self.component_templates and c not in ignore
        ]
        if missing:
            return 400, {
                "error": {
                    "type": "invalid_index_template_exception",
                    "reason": f"index_template [{name}] invalid, cause [index template "
                    f"[{name}] specifies component templates {missing} that do not exist]",
                },
                "status": 400,
            }
        self.templates[name] = body
        return 200, {"acknowledged": True}

    # -- indices and aliases ---------------------------------------------------------------
    def create_index(self, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if name in self.indices or name in self.aliases:
            return 400, {
                "error": {
                    "type": "resource_already_exists_exception",
                    "reason": f"index [{name}] already exists",
                },
                "status": 400,
            }
        self.indices[name] = body
        for alias, spec in body.get("aliases", {}).items():
            if spec.get("is_write_index") or alias not in self.aliases:
                self.aliases[alias] = name
            self.members.setdefault(alias, []).append(name)
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}

    def rollover(self, alias: str) -> tuple[int, dict[str, Any]]:
        old = self.aliases.get(alias)
        m = re.fullmatch(r"(.*-)(\d{6})", old or "")
        if old is None or m is None:
            return 400, {"error": {"type": "illegal_argument_exception"}, "status": 400}
        new = f"{m.group(1)}{int(m.group(2)) + 1:06d}"
        self.create_index(new, {"aliases": {alias: {"is_write_index": True}}})
        return 200, {"acknowledged": True, "old_index": old, "new_index": new, "rolled_over": True}

    def search(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Only what the sink asks: an ``ids`` query, ``_source: false``."""
        indices = self.members.get(target) or ([target] if target in self.indices else [])
        if not indices:
            return 404, {"error": {"type": "index_not_found_exception"}, "status": 404}
        wanted = set(body["query"]["ids"]["values"])
        hits = [
            {"_index": index, "_id": _id, "_score": 1.0}
            for index in indices
            for _id in self.docs.get(index, {})
            if _id in wanted
        ][: body.get("size", 10)]
        return 200, {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": len(indices), "successful": len(indices), "failed": 0},
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "hits": hits},
        }

    def is_data_stream(self, name: str) -> bool:
        if name in self.indices:
            return False
        matching = [
            t
            for t in self.templates.values()
            if any(fnmatch.fnmatchcase(name, p) for p in t.get("index_patterns", []))
        ]
        if not matching:
            return True
        return "data_stream" in max(matching, key=lambda t: t.get("priority", 0))

    # -- the bulk API ----------------------------------------------------------------------
    def bulk(self, body: bytes) -> dict[str, Any]:
        """Walks the NDJSON action by action: ``delete`` is an action line alone, the other
        operations carry their source on the next line."""
        lines = iter([ln for ln in body.split(b"\n") if ln.strip()])
        items = []
        for line in lines:
            ((op, meta),) = json.loads(line).items()
            if op == "delete":
                info = self.delete(meta["_id"], meta["_index"])
            else:
                info = self.write(op, meta["_id"], meta["_index"], json.loads(next(lines)))
            items.append({op: info})
        errors = any("error" in info for item in items for info in item.values())
        return {"took": 1, "errors": errors, "items": items}

    def delete(self, _id: str, target: str) -> dict[str, Any]:
        """A bulk ``delete``: 200 ``deleted``, or 404 ``not_found`` (no error: nothing was
        there); a missing index is 404 ``index_not_found_exception`` (a delete creates none)."""
        index = self.aliases.get(target, target)
        if self.throttle_items[_id] > 0:
            self.throttle_items[_id] -= 1
            return _error(index, _id, 429, "es_rejected_execution_exception", "rejected execution")
        if index not in self.indices and index not in self.docs:
            return _error(index, _id, 404, "index_not_found_exception", f"no such index [{target}]")
        if self.is_data_stream(index):
            return _error(index, _id, 400, "illegal_argument_exception", _STREAM_ONLY_CREATE)
        docs = self.docs.setdefault(index, {})
        if _id not in docs:
            return {
                "_index": index,
                "_id": _id,
                "_version": 1,
                "result": "not_found",
                "status": 404,
            }
        del docs[_id]
        self.deleted[_id] += 1
        version = max(self.indexed[_id], self.creates[_id]) + self.deleted[_id]
        return {
            "_index": index,
            "_id": _id,
            "_version": version,
            "result": "deleted",
            "status": 200,
        }

    def write(self, op: str, _id: str, target: str, source: dict[str, Any]) -> dict[str, Any]:
        """A bulk ``create`` or ``index`` (any other operation with a source is refused)."""
        index = self.aliases.get(target, target)
        stream = self.is_data_stream(index)
        if not stream and index not in self.indices:
            self.indices[index] = {}  # auto-created, as ES does
        if op not in ("create", "index"):
            return _error(index, _id, 400, "illegal_argument_exception", op)
        if op != "create" and stream:
            return _error(index, _id, 400, "illegal_argument_exception", _STREAM_ONLY_CREATE)
        if self.throttle_items[_id] > 0:
            self.throttle_items[_id] -= 1
            return _error(index, _id, 429, "es_rejected_execution_exception", "rejected execution")
        if _id in self.reject_ids:
            return _error(
                index,
                _id,
                400,
                "document_parsing_exception",
                "[1:2] failed to parse field [source.ip] of type [ip]",
            )
        docs = self.docs.setdefault(index, {})
        if op == "index":
            created = _id not in docs
            docs[_id] = source
            self.indexed[_id] += 1
            return {
                "_index": index,
                "_id": _id,
                "_version": self.indexed[_id],
                "result": "created" if created else "updated",
                "status": 201 if created else 200,
            }
        if _id in docs:
            return _error(
                index,
                _id,
                409,
                "version_conflict_engine_exception",
                f"[{_id}]: version conflict, document already exists",
            )
        docs[_id] = source
        self.creates[_id] += 1
        return {"_index": index, "_id": _id, "_version": 1, "result": "created", "status": 201}


_STREAM_ONLY_CREATE = "only write ops with an op_type of create are allowed in data streams"


def _error(index: str, _id: str, status: int, kind: str, reason: str) -> dict[str, Any]:
    """A bulk item's failure."""
    return {
        "_index": index,
        "_id": _id,
        "status": status,
        "error": {"type": kind, "reason": reason},
    }
