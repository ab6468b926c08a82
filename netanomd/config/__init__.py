"""Configuration of the sensor daemon (``netanomd run``) and of the commands that share its
sections: one declaration, validated once.

The package's public API is this module. Inside, by concern:

* :mod:`~netanomd.config.declare`: how a key is declared (type, default, description, rules);
* :mod:`~netanomd.config.sections` and :mod:`~netanomd.config.sources`: the declaration itself,
  the frozen dataclasses the rest of the code reads; ``sources`` is the one table of source
  types (a new type is one class there);
* :mod:`~netanomd.config.schema`: the JSON Schema (draft 2020-12), derived from the declaration;
* :mod:`~netanomd.config.loading`, :mod:`~netanomd.config.layers`,
  :mod:`~netanomd.config.yamlfile`, :mod:`~netanomd.config.validation`,
  :mod:`~netanomd.config.problems`, :mod:`~netanomd.config.masking`: reading the YAML file
  (``/etc/netanomd/netanomd.yaml`` by default) with the line of every key, the layering
  ``defaults < file < environment < --set < command options``, and the problems;
* :mod:`~netanomd.config.checks`: what ``netanomd config check`` checks on this machine beyond
  the values (model loads, log paths, directories, free ports, TLS and token files).

Layers: environment variables ``NETANOMD_<SECTION>__<KEY>`` (double underscore nests, a number
indexes a list, e.g. ``NETANOMD_SINKS__SQLITE__PATH=/x`` or ``NETANOMD_SOURCES__0__URL=wss://
zeek:27759``; single-segment names count only when they name a top-level key, so other
variables such as ``NETANOMD_ES_PASSWORD`` are left to their owners); ``--set key.path=value``
(``sources[1].path=...`` or ``sources.1.path=...``); a command's own options as
:class:`Option` (``netanomd es setup --url`` sets ``sinks.elasticsearch.hosts``). Environment
and ``--set`` values are parsed as YAML scalars (``true`` and ``5`` get types, ``'5'`` stays a
string; ``[a, b]`` gives a list).

Validation reports every problem at once in one :class:`ConfigValidationError`, one line each:
where the value came from (``file:line``, ``env NAME``, ``--set key=value`` or the option), its
dotted key path, and what is wrong. The result is a frozen, typed :class:`Config`;
:meth:`Config.to_dict` and :func:`dump_yaml` give it with secrets masked.
"""

from netanomd.config.layers import ENV_PREFIX, Option
from netanomd.config.loading import DEFAULT_CONFIG_PATH, dump_yaml, load_config
from netanomd.config.problems import ConfigValidationError, format_path
from netanomd.config.schema import SCHEMA, SOURCE_TYPES
from netanomd.config.sections import (
    ES_API_KEY_ENV,
    ES_PASSWORD_ENV,
    Config,
    ElasticsearchSinkConfig,
    MetricsSinkConfig,
    ModelConfig,
    PipelineConfig,
    SinksConfig,
    SqliteSinkConfig,
    ZeekNoticeSinkConfig,
)
from netanomd.config.sources import (
    RedisSourceConfig,
    SourceConfig,
    SuricataEveSourceConfig,
    SuricataSocketSourceConfig,
    ZeekBrokerSourceConfig,
    ZeekLogSourceConfig,
    ZeekWsSourceConfig,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "ES_API_KEY_ENV",
    "ES_PASSWORD_ENV",
    "SCHEMA",
    "SOURCE_TYPES",
    "Config",
    "ConfigValidationError",
    "ElasticsearchSinkConfig",
    "MetricsSinkConfig",
    "ModelConfig",
    "Option",
    "PipelineConfig",
    "RedisSourceConfig",
    "SinksConfig",
    "SourceConfig",
    "SqliteSinkConfig",
    "SuricataEveSourceConfig",
    "SuricataSocketSourceConfig",
    "ZeekBrokerSourceConfig",
    "ZeekLogSourceConfig",
    "ZeekNoticeSinkConfig",
    "ZeekWsSourceConfig",
    "dump_yaml",
    "format_path",
    "load_config",
]
