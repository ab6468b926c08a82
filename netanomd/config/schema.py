"""The JSON Schema of the configuration, derived from its declaration.

Owns :data:`SCHEMA` (draft 2020-12, closed objects, defaults in the schema), built from the
dataclasses of :mod:`netanomd.config.sections` and the source table of
:mod:`netanomd.config.sources`: field types give ``type``/``enum``/``items``, their
:class:`~netanomd.config.declare.Rules` give descriptions, defaults and constraints. Annotations
that validators ignore carry what the error messages need: ``x-error`` (a friendlier message per
failing keyword, ``{value}`` replaced by the offending value), ``x-removed`` (keys older
versions took, with what to do instead) and ``x-secret``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, Literal, get_args, get_origin

from jsonschema import Draft202012Validator

from netanomd.config.declare import (
    SOURCES,
    Rules,
    SourceType,
    description_of,
    has_default,
    hints,
    plain,
    rules_of,
    without_none,
)
from netanomd.config.sections import Config
from netanomd.config.sources import SourceConfig

__all__ = ["SCHEMA", "SECRET_KEYS", "SOURCE_TYPES", "VALIDATOR", "resolve"]

_JSON_TYPES: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _constraints(r: Rules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.pattern is not None:
        out["pattern"] = r.pattern
        if r.error:
            out["x-error"] = {"pattern": r.error}
    for key, value in (
        ("minimum", r.minimum),
        ("maximum", r.maximum),
        ("exclusiveMinimum", r.exclusive_minimum),
    ):
        if value is not None:
            out[key] = value
    return out


def _value_schema(tp: Any, r: Rules) -> dict[str, Any]:
    tp, nullable = without_none(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin is tuple:
        item, ellipsis = get_args(tp)
        if ellipsis is not Ellipsis:
            raise TypeError(f"configuration lists are tuple[X, ...], not {tp}")
        if item is SourceConfig:
            items: dict[str, Any] = {"$ref": "#/$defs/source"}
        else:
            items = _value_schema(item, Rules(r.description, pattern=r.pattern, error=r.error))
        out: dict[str, Any] = {"type": ["string", "array"] if r.one_or_many else "array"}
        out["items"] = items
        if r.one_or_many:
            out.update(_constraints(r))
        if r.min_items is not None:
            out["minItems"] = r.min_items
        return out
    if isinstance(tp, type) and is_dataclass(tp):
        return _object(tp)
    name = _JSON_TYPES.get(tp)
    if name is None:
        raise TypeError(f"no JSON Schema type for configuration type {tp}")
    out = {"type": [name, "null"] if nullable else name}
    if name == "string":
        out["minLength"] = 1
    out.update(_constraints(r))
    return out


def _default(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return {}  # a section: its keys carry their own defaults
    if isinstance(f.default, tuple) and f.default and isinstance(f.default[0], SourceConfig):
        # Source items stay bare: their defaults follow a type that later layers may change.
        return [{"type": s.type} for s in f.default]
    return plain(f.default)


def _property(tp: Any, f: Field[Any]) -> dict[str, Any]:
    r = rules_of(f, tp)
    out = _value_schema(tp, r)
    if has_default(f):
        out["default"] = _default(f)
    out["description"] = r.description
    if r.secret:
        out["x-secret"] = True
    return out


def _object(cls: type[Any], description: str | None = None) -> dict[str, Any]:
    """A closed object of a dataclass's fields; fields without a default are required."""
    out: dict[str, Any] = {
        "type": "object",
        "description": description or description_of(cls),
        "additionalProperties": False,
        "properties": {f.name: _property(hints(cls)[f.name], f) for f in fields(cls)},
    }
    required = [f.name for f in fields(cls) if not has_default(f)]
    if required:
        out["required"] = required
    return out


def _source_def(source: SourceType) -> dict[str, Any]:
    out = _object(source.cls)
    out["properties"]["type"] = {"const": source.name, "description": "source type"}
    if source.exactly_one_of:
        keys, message = source.exactly_one_of
        out["oneOf"] = [
            {"properties": {k: {"not": {"type": "null"}}}, "required": [k]} for k in keys
        ]
        out["x-error"] = {"oneOf": message}
    if source.removed:
        out["x-removed"] = dict(source.removed)
    return out


def _source() -> dict[str, Any]:
    return {
        "type": "object",
        "description": description_of(SourceConfig),
        "required": ["type"],
        "properties": {"type": {"enum": list(SOURCES), "description": "source type"}},
        # The type-specific definitions are closed (additionalProperties: false).
        "allOf": [
            {
                "if": {
                    "type": "object",
                    "properties": {"type": {"const": t}},
                    "required": ["type"],
                },
                "then": {"$ref": f"#/$defs/{t}"},
            }
            for t in SOURCES
        ],
    }


def _build() -> dict[str, Any]:
    top = _object(Config, "netanomd run configuration")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://netanomd.invalid/schema/netanomd.yaml.json",
        "title": top.pop("description"),
        **top,
        "$defs": {**{s.name: _source_def(s) for s in SOURCES.values()}, "source": _source()},
    }


SCHEMA: dict[str, Any] = _build()
#: The source type names, in declaration order.
SOURCE_TYPES = tuple(SOURCES)
VALIDATOR = Draft202012Validator(SCHEMA)


def _secret_keys(schema: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for key, sub in schema.get("properties", {}).items():
        if sub.get("x-secret"):
            out.add(key)
        out |= _secret_keys(sub)
    return out


#: Names of the keys whose values are secrets (masked wherever a value is shown).
SECRET_KEYS = frozenset(
    _secret_keys(SCHEMA).union(*(_secret_keys(d) for d in SCHEMA["$defs"].values()))
)


def resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """A ``#/$defs/...`` reference's target; any other schema as it is."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: Mapping[str, Any] = SCHEMA["$defs"][ref.removeprefix("#/$defs/")]
        return resolved
    return schema
