"""Loading the configuration: read, layer, validate once, build the typed :class:`Config`.

Layers, lowest first: the declared defaults, the YAML file, ``NETANOMD_*`` environment
variables, ``--set key.path=value`` items, and the options of a command
(:class:`~netanomd.config.layers.Option`). Every problem of every layer is collected and
raised at once in one :class:`~netanomd.config.problems.ConfigValidationError`, each naming
its origin and key path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from netanomd.config.declare import SOURCES, hints, without_none
from netanomd.config.layers import (
    Option,
    defaults,
    env_overrides,
    fill_defaults,
    merge,
    parse_set_path,
    parse_value,
    set_path,
)
from netanomd.config.masking import MASK, mask_str
from netanomd.config.problems import ConfigValidationError, KeyPath, Origin, Origins, Problem
from netanomd.config.schema import SCHEMA, SECRET_KEYS
from netanomd.config.sections import Config
from netanomd.config.sources import SourceConfig
from netanomd.config.validation import validate
from netanomd.config.yamlfile import read_file

__all__ = ["DEFAULT_CONFIG_PATH", "dump_yaml", "load_config"]

DEFAULT_CONFIG_PATH = Path("/etc/netanomd/netanomd.yaml")


def _typed(tp: Any, value: Any) -> Any:
    """Validated data as the declared type: lists to tuples (a lone item of a one-or-many
    list too), whole floats of integer keys to int, integers of float keys to float."""
    tp, _ = without_none(tp)
    if value is None:
        return None
    if get_origin(tp) is tuple:
        item = get_args(tp)[0]
        return tuple(_typed(item, v) for v in ([value] if isinstance(value, str) else value))
    if tp is SourceConfig:
        return _instance(SOURCES[value["type"]].cls, value)
    if isinstance(tp, type) and is_dataclass(tp):
        return _instance(tp, value)
    if tp is int or tp is float:
        return tp(value)
    return value


def _instance(cls: type[Any], data: Mapping[str, Any]) -> Any:
    types = hints(cls)
    return cls(**{f.name: _typed(types[f.name], data[f.name]) for f in fields(cls)})


def _layers(
    env: Mapping[str, str], overrides: Sequence[str], options: Sequence[Option]
) -> list[tuple[Origin, KeyPath | None, Any, str]]:
    """(origin, key path or None when malformed, value, why malformed) of every override."""
    out: list[tuple[Origin, KeyPath | None, Any, str]] = []
    for i, (name, key_path, raw) in enumerate(env_overrides(env), 1):
        bad = "empty key segment in the variable name"
        out.append((Origin("env", name, order=i), key_path, parse_value(raw), bad))
    for i, item in enumerate(overrides, 1):
        key, sep, raw = item.partition("=")
        key_path = parse_set_path(key.strip()) if sep else None
        if key_path and key_path[-1] in SECRET_KEYS:
            item = f"{key}={MASK}"
        elif sep:
            item = f"{key}={mask_str(raw)}"
        bad = "expected key.path=value (e.g. log_level=debug)"
        out.append((Origin("set", item, order=i), key_path, parse_value(raw), bad))
    for i, option in enumerate(options, 1):
        if option.value is None:
            continue
        key_path = option.path()
        shown = option.describe(secret=key_path[-1] in SECRET_KEYS)
        out.append((Origin("option", shown, order=i), key_path, option.value, ""))
    return out


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    options: Sequence[Option] = (),
) -> Config:
    """Load, layer and validate the configuration.

    ``path``: the YAML file (None: defaults only; the CLI passes :data:`DEFAULT_CONFIG_PATH`).
    ``env``: the environment to take ``NETANOMD_*`` overrides from (default ``os.environ``).
    ``overrides``: ``key.path=value`` strings from ``--set``, applied in order.
    ``options``: a command's options, applied last (those whose value is None are skipped).

    Raises :class:`ConfigError` (a :class:`ConfigValidationError` listing every problem when
    the content is invalid; a plain one when the file cannot be read or parsed).
    """
    env = os.environ if env is None else env
    origins = Origins()
    problems: list[Problem] = []
    data = defaults()
    if path is not None:
        merge(data, read_file(Path(path), origins, problems))
    for origin, key_path, value, malformed in _layers(env, overrides, options):
        if key_path is None:
            problems.append(Problem(origin, (), malformed))
            continue
        cannot = set_path(data, key_path, value)
        if cannot:
            problems.append(Problem(origin, key_path, cannot))
        else:
            origins.set(key_path, origin)
    fill_defaults(SCHEMA, data)
    problems.extend(validate(data, env, origins))
    if problems:
        problems.sort(key=Problem.sort_key)
        raise ConfigValidationError([p.render() for p in problems])
    config: Config = _instance(Config, data)
    return config


def dump_yaml(config: Config) -> str:
    """The effective configuration as YAML (secrets masked), loadable by :func:`load_config`."""
    text: str = yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)
    return text
