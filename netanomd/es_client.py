"""The one way to build an Elasticsearch client: from the ``sinks.elasticsearch`` section.

Used by the daemon's Elasticsearch sink, ``netanomd score --es-url`` and ``netanomd es
setup|check``, so all of them connect the same way. Secrets come from the section or, when it
leaves them unset, from ``NETANOMD_ES_API_KEY`` / ``NETANOMD_ES_PASSWORD``; they never appear
in ``repr`` or logs. The client is the official ``elasticsearch`` package (8.x and 9.x).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from elasticsearch import Elasticsearch

from netanomd.config import ES_API_KEY_ENV, ES_PASSWORD_ENV, ElasticsearchSinkConfig

__all__ = ["elasticsearch_client"]


def elasticsearch_client(
    section: ElasticsearchSinkConfig, env: Mapping[str, str] | None = None
) -> Elasticsearch:
    """A client for the section's hosts, credentials and TLS settings (no retries: the sink's
    spool retries); ``env`` (default ``os.environ``) supplies the secrets the section leaves
    unset."""
    env = os.environ if env is None else env
    api_key = section.api_key or env.get(ES_API_KEY_ENV)
    password = section.password or env.get(ES_PASSWORD_ENV)
    kwargs: dict[str, Any] = {"request_timeout": section.request_timeout, "max_retries": 0}
    if api_key:
        kwargs["api_key"] = api_key
    elif section.username:
        kwargs["basic_auth"] = (section.username, password or "")
    if section.ca_file:
        kwargs["ca_certs"] = section.ca_file
    if not section.verify_certs:
        kwargs["verify_certs"] = False
    return Elasticsearch(list(section.hosts), **kwargs)
