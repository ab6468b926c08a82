"""Validating the layered configuration data: the schema, then what a schema cannot say.

Owns the wording of every problem: unknown keys with the closest known key as a suggestion,
removed keys with what to do instead, choices with a did-you-mean, the schema's ``x-error``
messages; secrets are masked wherever a value is shown. Cross-checks: Elasticsearch credentials
in pairs, the HTTP endpoint off loopback only with a token and TLS, and every port (of a
``host:port`` or a URL) from 1 to 65535. What needs the machine (files, directories, whether a
port is free) is :mod:`netanomd.config.checks`, run by ``netanomd config check``.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jsonschema import ValidationError

from netanomd.config.masking import MASK, mask_str
from netanomd.config.problems import KeyPath, Origins, Problem
from netanomd.config.schema import SECRET_KEYS, VALIDATOR
from netanomd.config.sections import ES_PASSWORD_ENV

__all__ = ["is_loopback", "show", "validate"]


def _suggest(word: str, choices: Sequence[Any]) -> str | None:
    by_lower = {str(c).lower(): str(c) for c in choices}
    match = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[match[0]] if match else None


def show(path: KeyPath, value: Any) -> str:
    """A value for a message: YAML spelling of null/true/false, secrets masked."""
    if path and path[-1] in SECRET_KEYS and value is not None:
        return repr(MASK)
    if isinstance(value, str):
        return repr(mask_str(value))
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _messages(err: ValidationError) -> Iterator[tuple[KeyPath, str]]:
    path: KeyPath = tuple(err.absolute_path)
    kind = str(err.validator)
    schema = err.schema if isinstance(err.schema, dict) else {}
    instance = err.instance
    shown = show(path, instance)
    custom = schema.get("x-error", {}).get(kind)
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = list(schema.get("properties", {}))
        removed = schema.get("x-removed", {})
        for key in instance:
            if key in known:
                continue
            if key in removed:
                yield (*path, key), removed[key]
                continue
            hint = _suggest(str(key), known)
            more = f"; did you mean {hint!r}?" if hint else f" (known keys: {', '.join(known)})"
            yield (*path, key), f"unknown key {key!r}{more}"
    elif kind == "required" and isinstance(instance, dict):
        for key in _listed(err.validator_value):
            if key not in instance:
                enum = schema.get("properties", {}).get(key, {}).get("enum")
                choices = f" (one of: {', '.join(map(str, enum))})" if enum else ""
                yield (*path, key), f"missing required key{choices}"
    elif custom:
        yield path, str(custom).replace("{value}", shown)
    elif kind == "enum":
        allowed = _listed(err.validator_value)
        choices = ", ".join(repr(c) for c in allowed)
        hint = _suggest(instance, allowed) if isinstance(instance, str) else None
        more = f"; did you mean {hint!r}?" if hint else ""
        yield path, f"{shown} is not one of {choices}{more}"
    elif kind == "type":
        want = err.validator_value
        want_text = " or ".join(want) if isinstance(want, list) else str(want)
        yield path, f"{shown} is not of type {want_text}"
    else:
        message = err.message
        if shown != repr(instance):
            message = message.replace(repr(instance), shown)
        yield path, message


def _walk(value: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _walk(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _walk(sub, (*path, i))


#: Keys that name a file netanomd reads: it must exist and be readable when the
#: configuration is loaded, so ``config check`` finds a wrong path before the daemon needs it.
FILE_KEYS = frozenset({"ca_file"})


def _file_problem(path: KeyPath, value: str) -> str | None:
    shown = show(path, value)
    if not os.path.exists(value):
        return f"{shown}: no such file"
    if not os.path.isfile(value):
        return f"{shown} is not a file"
    if not os.access(value, os.R_OK):
        return f"{shown} cannot be read (permission denied)"
    return None


#: Keys holding ``host:port``; keys holding URLs (``hosts`` may be a list of them).
HOSTPORT_KEYS = frozenset({"listen", "connect"})
URL_KEYS = frozenset({"url", "hosts"})


def port_problem(path: KeyPath, key: str, value: str) -> str | None:
    """What is wrong with the port of the ``host:port`` or URL ``value`` of ``key`` at
    ``path`` (None when it is fine, or absent from a URL)."""
    shown = show(path, value)
    if key in HOSTPORT_KEYS:
        text = value.rpartition(":")[2]
        port = int(text) if text.isascii() and text.isdigit() else None
    else:
        try:
            parts = urllib.parse.urlsplit(value)
            port = parts.port
        except ValueError as exc:  # "Port out of range 0-65535", "could not be cast"
            return f"{shown}: the port is not a number from 1 to 65535 ({exc})"
        if parts.scheme not in ("unix", "") and not parts.hostname:
            return f"{shown} has no host"
    if port is None and key in HOSTPORT_KEYS:
        return f"{shown} has no port"
    if port is not None and not 1 <= port <= 65535:
        return f"{shown}: port {port} is not from 1 to 65535"
    return None


def _semantic_checks(data: dict[str, Any], env: Mapping[str, str]) -> Iterator[tuple[KeyPath, str]]:
    """What the schema cannot say."""
    for path, value in _walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            yield path, f"{value!r} is not a finite number"
        key = next((k for k in reversed(path) if isinstance(k, str)), None)
        if isinstance(value, str) and (key in HOSTPORT_KEYS or key in URL_KEYS):
            bad_port = port_problem(path, key, value)
            if bad_port:
                yield path, bad_port
        if path and path[-1] in FILE_KEYS and isinstance(value, str):
            problem = _file_problem(path, value)
            if problem:
                yield path, problem
    es = data.get("sinks", {}).get("elasticsearch") if isinstance(data.get("sinks"), dict) else None
    if isinstance(es, dict):
        where: KeyPath = ("sinks", "elasticsearch")
        username, password = es.get("username"), es.get("password")
        has_password = isinstance(password, str) or bool(env.get(ES_PASSWORD_ENV))
        if isinstance(username, str) and not has_password:
            yield (
                (*where, "username"),
                "given without a password (set sinks.elasticsearch.password or the "
                f"{ES_PASSWORD_ENV} environment variable)",
            )
        if isinstance(password, str) and username is None:
            yield (*where, "password"), "given without a username"
    sinks = data.get("sinks")
    metrics = sinks.get("metrics") if isinstance(sinks, dict) else None
    if isinstance(metrics, dict):
        yield from _endpoint_checks(metrics)
    ui = data.get("ui")
    if isinstance(ui, dict):
        yield from _ui_checks(ui)


def _ui_checks(ui: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """The analyst page: TLS files come in pairs; off loopback, a token to get in."""
    cert, key = ui.get("tls_cert"), ui.get("tls_key")
    if isinstance(cert, str) != isinstance(key, str):
        given, other = ("tls_cert", "tls_key") if isinstance(cert, str) else ("tls_key", "tls_cert")
        yield ("ui", given), f"given without {other} (both are needed for HTTPS)"
    listen = ui.get("listen")
    if not ui.get("enabled") or not isinstance(listen, str) or ":" not in listen:
        return
    if is_loopback(listen.rpartition(":")[0]):
        return
    if not isinstance(ui.get("token_file"), str) and not isinstance(ui.get("analysts_file"), str):
        yield (
            ("ui", "listen"),
            f"{listen} is reachable from other hosts, so it needs token_file or analysts_file: "
            "without a token anyone who can connect reads the incidents (or listen on 127.0.0.1)",
        )


def is_loopback(host: str) -> bool:
    """Whether a listen host (``127.0.0.1``, ``[::1]``, ``localhost``...) is reachable from
    this machine only; a name other than ``localhost`` counts as reachable from outside."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _endpoint_checks(metrics: dict[str, Any]) -> Iterator[tuple[KeyPath, str]]:
    """The HTTP endpoint: TLS files come in pairs; off loopback, a token and TLS."""
    where: KeyPath = ("sinks", "metrics")
    cert, key = metrics.get("tls_cert"), metrics.get("tls_key")
    if isinstance(cert, str) != isinstance(key, str):
        given, other = ("tls_cert", "tls_key") if isinstance(cert, str) else ("tls_key", "tls_cert")
        yield (*where, given), f"given without {other} (both are needed for HTTPS)"
    listen = metrics.get("listen")
    if metrics.get("enabled") is False or not isinstance(listen, str) or ":" not in listen:
        return
    host = listen.rpartition(":")[0]
    if is_loopback(host):
        return
    keys = ("token_file", "tls_cert", "tls_key")
    absent = [k for k in keys if not isinstance(metrics.get(k), str)]
    if absent:
        yield (
            (*where, "listen"),
            f"{listen} is reachable from other hosts, so it needs {', '.join(absent)}: "
            "without a token anyone who can connect reads the metrics and posts flows, and "
            "without TLS the token crosses the network in clear (or listen on 127.0.0.1)",
        )


def validate(data: dict[str, Any], env: Mapping[str, str], origins: Origins) -> list[Problem]:
    """Every problem of the layered data, each with the origin of its key path."""
    problems: list[Problem] = []
    seen: set[tuple[KeyPath, str]] = set()
    for err in VALIDATOR.iter_errors(data):
        for path, message in _messages(err):
            if (path, message) not in seen:
                seen.add((path, message))
                problems.append(Problem(origins.find(path), path, message))
    bad_paths = {p for p, _ in seen}
    for path, message in _semantic_checks(data, env):
        if path not in bad_paths:
            problems.append(Problem(origins.find(path), path, message))
    return problems
