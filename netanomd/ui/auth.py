"""Who may see the page and who may act on it.

Owns :class:`Access`: the viewer token and the analysts' tokens, the binding's locality, and
the role of a request (``viewer`` or ``analyst`` with a name for the record). Rules:

* bound to a loopback address, no token is needed; a request is a viewer, or the local analyst
  when one is named (``--analyst NAME``);
* bound elsewhere, every request must carry a token (``Authorization: Bearer``, the session
  cookie, or ``?token=`` once, which sets the cookie): the viewer token gives read access, an
  analyst's token (``--analyst NAME:TOKEN``) read and write; anything else is refused (401);
* without an analyst, the page is read-only: actions answer 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from netanomd.config.validation import is_loopback
from netanomd.errors import ConfigError

COOKIE = "netanomd_ui"


@dataclass(frozen=True)
class Role:
    """A request's role: ``analyst`` (with the name actions are recorded under) or ``viewer``."""

    name: str
    analyst: bool


VIEWER = Role("viewer", False)


@dataclass(frozen=True)
class Access:
    """Tokens and binding (see the module docstring)."""

    bind: str = "127.0.0.1"
    token: str | None = None
    analysts: Mapping[str, str | None] = field(default_factory=dict)  # name -> token

    def __post_init__(self) -> None:
        for name, tok in self.analysts.items():
            if not name or any(c.isspace() for c in name):
                raise ConfigError(f"analyst name {name!r}: expected one word")
            if tok is not None and len(tok) < 16:
                raise ConfigError(f"analyst {name}: the token must be at least 16 characters")
        if self.token is not None and len(self.token) < 16:
            raise ConfigError("ui token: at least 16 characters")
        if not self.local:
            if self.token is None and not any(self.analysts.values()):
                raise ConfigError(
                    f"ui bound to {self.bind}, beyond loopback: give a token (--token-file or "
                    "NETANOMD_UI_TOKEN) or an analyst's token (--analyst NAME:TOKEN)"
                )
            tokenless = [n for n, t in self.analysts.items() if t is None]
            if tokenless:
                raise ConfigError(
                    f"ui bound to {self.bind}, beyond loopback: analyst {tokenless[0]} needs a "
                    "token (--analyst NAME:TOKEN)"
                )

    @property
    def local(self) -> bool:
        return is_loopback(self.bind)

    @property
    def writable(self) -> bool:
        return bool(self.analysts)

    def role(self, given: str | None) -> Role | None:
        """The role of a request carrying token ``given`` (None: refused)."""
        if given:
            for name, tok in self.analysts.items():
                if tok is not None and hmac.compare_digest(given.encode(), tok.encode()):
                    return Role(name, True)
            if self.token is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                return VIEWER
        if not self.local:
            return None
        local = [n for n, t in self.analysts.items() if t is None]
        return Role(local[0], True) if local else VIEWER
