"""The package's exception hierarchy: one base class, one subclass per kind of failure.

Library code raises these with context (file, line, key path) and chains the cause; the CLI
catches :class:`NetanomError` once in ``main()`` and exits non-zero.
"""

from __future__ import annotations


class NetanomError(Exception):
    """Base class for every error netanomd raises on purpose."""


class InputError(NetanomError):
    """A file or message is not what it claims to be (not a log, unreadable, wrong format)."""


class ConfigError(NetanomError):
    """The configuration is invalid; the message names the file and key path."""


class ModelError(NetanomError):
    """A model artifact is missing, corrupt, or does not match this version of netanomd."""


class TransportError(NetanomError):
    """A peer (Zeek, Elasticsearch, Redis) could not be reached or spoke out of protocol."""


class SensorError(NetanomError):
    """A sensor netanomd runs itself (Zeek or Suricata reading a capture) failed."""
