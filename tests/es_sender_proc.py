"""Runs an ElasticsearchSink sender over an existing spool until it is empty (a separate
process, so a test can SIGKILL it mid-flush). Usage: python -m tests.es_sender_proc URL DIR"""

from __future__ import annotations

import sys

from elasticsearch import Elasticsearch

from netanomd.ecs import ObserverInfo
from netanomd.sinks.elasticsearch import ElasticsearchSink
from netanomd.spool import Spool


def main() -> int:
    url, directory = sys.argv[1], sys.argv[2]
    sink = ElasticsearchSink(
        Elasticsearch(url, max_retries=0, request_timeout=10),
        Spool(directory),
        ObserverInfo(name="sensor-1", hostname="sensor-1"),
        batch_size=50,
        initial_backoff=0.05,
    )
    ok = sink.drain(timeout=120)
    sink.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
