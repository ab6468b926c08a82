"""Reading the configuration file: YAML with the line of every key and the keys given twice.

The file is bounded before anything walks it: at most :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_NODES` nodes with aliases expanded (a few aliases of aliases, "billion laughs", would
otherwise expand to billions of values and hang every later step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from netanomd.config.problems import KeyPath, Origin, Origins, Problem
from netanomd.errors import ConfigError

__all__ = ["MAX_DEPTH", "MAX_NODES", "read_file"]

#: Deepest nesting of mappings and lists a configuration may have (the declaration needs 4).
MAX_DEPTH = 32
#: Most nodes a configuration may have, aliases expanded.
MAX_NODES = 100_000


class _TooBig(Exception):
    pass


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records the line of every mapping key and sequence item by key path,
    and the keys given twice in one mapping."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[KeyPath, int] = {}
        self.duplicates: list[tuple[KeyPath, int, int]] = []  # path, line, first line
        self.nodes = 0

    def construct_timestamp(self, node: yaml.ScalarNode) -> Any:
        """A YAML date (``2021-06-06``), or a YAML error at its line when it is no date."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:  # e.g. month 13: PyYAML raises a bare ValueError
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid date ({exc})", node.start_mark
            ) from None

    def construct_document(self, node: yaml.Node) -> Any:
        self._record(node, (), set())
        return super().construct_document(node)

    def _record(self, node: yaml.Node, path: KeyPath, active: set[int]) -> None:
        if id(node) in active:  # a recursive alias
            return
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES} values (aliases expanded)")
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"nested deeper than {MAX_DEPTH} levels")
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append(((*path, key), line, seen[key]))
                seen[key] = line
                self.lines[(*path, key)] = line
                self._record(value_node, (*path, key), active)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[(*path, i)] = item.start_mark.line + 1
                self._record(item, (*path, i), active)
        active.discard(id(node))


_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _LineLoader.construct_timestamp)


def read_file(path: Path, origins: Origins, problems: list[Problem]) -> dict[str, Any]:
    """The file's top-level mapping; records each key's line in ``origins`` and each duplicate
    key in ``problems``. Raises :class:`ConfigError` when the file cannot be read or parsed."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(f"{name}: cannot read the configuration: {why}") from e
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)  # refuses characters YAML does not allow
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise ConfigError(f"{at}: not valid YAML: {e.problem or e.context}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{name}: not valid YAML: {e}") from e
    except _TooBig as e:
        raise ConfigError(f"{name}: too large for a configuration: {e}") from None
    except RecursionError:  # the YAML parser itself recurses per level
        raise ConfigError(
            f"{name}: too large for a configuration: nested deeper than {MAX_DEPTH} levels"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    for key_path, line in loader.lines.items():
        origins.set(key_path, Origin("file", name, line))
    for key_path, line, first in loader.duplicates:
        problems.append(
            Problem(Origin("file", name, line), key_path, f"duplicate key, first on line {first}")
        )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}:1: the top level must be a mapping of sections, not {type(data).__name__}"
        )
    return data
