"""The analyst's page inside the daemon (the ``ui:`` section of ``netanomd run``).

Owns :func:`attach`: reads the section (tokens, analysts, rules file), gives the pipeline its
allowlist hook (a :class:`~netanomd.feedback.Suppressor` over the rules stored in
``sinks.sqlite``'s database, swapped whenever the page changes a rule), and serves the page in a
thread over that database with the daemon's live model. Suppression counts reach the page's
``/metrics`` and the database whenever the page reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from netanomd.errors import ConfigError
from netanomd.feedback import FeedbackStore, Suppressor, load_rules_file
from netanomd.fsutil import read_token
from netanomd.ui.app import UiSettings
from netanomd.ui.auth import Access
from netanomd.ui.server import Background, Listen

if TYPE_CHECKING:
    from netanomd.config import Config
    from netanomd.daemon.pipeline import Pipeline


def read_analysts(path: str) -> dict[str, str | None]:
    """``name token`` per line (blank lines and ``#`` comments skipped)."""
    out: dict[str, str | None] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"ui.analysts_file: cannot read {path}: {exc}") from None
    for n, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise ConfigError(f"ui.analysts_file: {path} line {n}: expected 'name token'")
        out[words[0]] = words[1]
    return out


def attach(cfg: Config, pipeline: Pipeline) -> Background:
    """Hook the allowlist into ``pipeline`` and start serving the page (stop it with
    ``.stop()``)."""
    ui = cfg.ui
    db = Path(cfg.sinks.sqlite.path)
    rules = load_rules_file(ui.rules_file) if ui.rules_file else []
    store = FeedbackStore(db, config_rules=rules)
    try:
        suppressor = Suppressor(store.rules())
    finally:
        store.close()
    pipeline.suppress = suppressor
    host, _, port = ui.listen.rpartition(":")
    host = host.strip("[]")
    access = Access(
        bind=host,
        token=read_token(ui.token_file, "ui.token_file") if ui.token_file else None,
        analysts=read_analysts(ui.analysts_file) if ui.analysts_file else {},
    )
    settings = UiSettings(
        db=db,
        access=access,
        kibana=ui.kibana_url,
        config_rules=rules,
        live_model=lambda: pipeline.model,
        suppressor=suppressor,
        recent_scores=pipeline.recent_scores,
    )
    server = Background(settings, Listen(host, int(port), ui.tls_cert, ui.tls_key))
    server.start()
    return server
