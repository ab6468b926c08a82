"""How a configuration key is declared: once, as a dataclass field with its rules.

Owns the vocabulary of the declaration in :mod:`netanomd.config.sections` and
:mod:`netanomd.config.sources`: :func:`setting` (a key with a default) and :func:`required`
(a key without one) put the description and the constraints (pattern with its friendly error,
bounds, minimum items, secret) in the field's metadata; the field's Python type says the rest
(``str``, ``int``, ``float``, ``bool``, ``Literal[...]`` for a choice, ``X | None`` for
nullable, ``tuple[X, ...]`` for a list). A nested section is a dataclass field
``field(default_factory=TheSection)``, described by the first line of its docstring.
:mod:`netanomd.config.schema` derives the JSON Schema from these; nothing restates them.

:func:`source` registers a source type: its declaration is the only edit a new type needs.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from netanomd.config.masking import MASK, mask_str

#: The key under which a field's :class:`Rules` live in its metadata.
META = "netanomd.config"


@dataclass(frozen=True)
class Rules:
    """What the Python type of a field does not say."""

    description: str
    #: A regular expression the string must match, and the message when it does not
    #: (``{value}`` is replaced by the offending value).
    pattern: str | None = None
    error: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    min_items: int | None = None
    #: Masked in ``config show``, in error messages, and left out of ``repr``.
    secret: bool = False
    #: A list that may also be given as a single item (``hosts: http://es:9200``).
    one_or_many: bool = False


def setting(default: Any, description: str, **rules: Any) -> Any:
    """A key with a default (immutable: a tuple for a list)."""
    r = Rules(description, **rules)
    return field(default=default, repr=not r.secret, metadata={META: r})


def required(description: str, **rules: Any) -> Any:
    """A key without a default: the configuration must give it."""
    r = Rules(description, **rules)
    return field(repr=not r.secret, metadata={META: r})


_HINTS: dict[type[Any], dict[str, Any]] = {}


def hints(cls: type[Any]) -> dict[str, Any]:
    """The resolved field types of a declared dataclass."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def without_none(tp: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) for a declared type ``X`` or ``X | None``."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0], True
        raise TypeError(f"configuration types are X or X | None, not {tp}")
    return tp, False


def rules_of(f: Field[Any], tp: Any) -> Rules:
    """The rules of a declared field of type ``tp``. A nested section is declared as
    ``field(default_factory=TheSection)`` and described by its docstring; any other field
    without rules is a programming error."""
    r = f.metadata.get(META)
    if isinstance(r, Rules):
        return r
    if isinstance(tp, type) and is_dataclass(tp) and f.default_factory is tp:
        return Rules(description_of(tp))
    raise TypeError(f"configuration field {f.name!r} is not declared with setting()")


def has_default(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


def description_of(cls: type) -> str:
    """A section's description: the first line of its docstring."""
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(f"{cls.__name__}("):  # dataclass's generated docstring
        raise TypeError(f"configuration section {cls.__name__} has no docstring")
    return doc.splitlines()[0].strip().rstrip(".")


@dataclass(frozen=True)
class SourceType:
    """A registered source type: its name (the ``type:`` key), declaration and extra rules."""

    name: str
    cls: type[Any]
    #: (keys, message): exactly one of the keys must be given.
    exactly_one_of: tuple[tuple[str, ...], str] | None = None
    #: Keys that older versions accepted, and what to do instead.
    removed: Mapping[str, str] = field(default_factory=dict)


#: Every source type by name, in declaration order (the order of the shipped example).
SOURCES: dict[str, SourceType] = {}

C = TypeVar("C")


def source(
    name: str,
    *,
    exactly_one_of: tuple[tuple[str, ...], str] | None = None,
    removed: Mapping[str, str] | None = None,
) -> Callable[[type[C]], type[C]]:
    """Register a source type's declaration (a frozen dataclass whose first field is
    ``type``) under ``name``."""

    def register(cls: type[C]) -> type[C]:
        if name in SOURCES:
            raise TypeError(f"source type {name!r} is declared twice")
        first = fields(cls)[0]  # type: ignore[arg-type]
        if first.name != "type":
            raise TypeError(f"{cls.__name__}: the first field must be 'type'")
        SOURCES[name] = SourceType(name, cls, exactly_one_of, dict(removed or {}))
        return cls

    return register


def plain(value: Any, mask_secrets: bool = False) -> Any:
    """A declared dataclass as plain data (dicts and lists); with ``mask_secrets``, secret
    keys that are set read :data:`~netanomd.config.masking.MASK` and URL passwords are hidden."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in fields(value):
            v = getattr(value, f.name)
            r = f.metadata.get(META)
            secret = mask_secrets and isinstance(r, Rules) and r.secret and v is not None
            out[f.name] = MASK if secret else plain(v, mask_secrets)
        return out
    if isinstance(value, tuple | list):
        return [plain(v, mask_secrets) for v in value]
    if mask_secrets and isinstance(value, str):
        return mask_str(value)
    return value
