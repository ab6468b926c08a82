"""The versioned model store: every model kept by id, one of them current.

Layout under the store's root (``model.store``, default ``/var/lib/netanomd``)::

    models/<model id>.npz     every model added, never rewritten (the id names its content)
    current                   symlink -> models/<id>.npz, swapped atomically (os.replace)
    history.jsonl             one line per promotion or rollback: time, action, model, why

The daemon follows the pointer when its ``model.path`` is ``<store>/current``: loading opens
the symlink's target, and the daemon already reloads when the file behind its model path
changes (``model.reload_check_seconds``) or on SIGHUP. Promotion and rollback hold an
``flock`` on ``.lock`` so two commands never interleave.

Rollback walks the history as a stack: a promotion pushes its model, a rollback pops the
current one and makes the one below it current again.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netanomd.errors import ModelError
from netanomd.fsutil import open_append
from netanomd.model.artifact import Model

POINTER = "current"
MODELS = "models"
HISTORY = "history.jsonl"


@dataclass(frozen=True)
class StoredModel:
    """One model in the store, as ``model list`` shows it."""

    model_id: str
    path: Path
    created_at: str
    current: bool


class ModelStore:
    """The store rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.models = self.root / MODELS
        self.pointer = self.root / POINTER
        self.history_path = self.root / HISTORY

    # -- reading ----------------------------------------------------------------------------
    def path_of(self, model_id: str) -> Path:
        return self.models / f"{model_id}.npz"

    def ids(self) -> list[str]:
        """Every stored model id, oldest first (ids start with their training time)."""
        if not self.models.is_dir():
            return []
        found = [(p.stat().st_mtime, p.stem) for p in self.models.glob("*.npz")]
        return [i for _, i in sorted(found)]

    def current_id(self) -> str | None:
        """The id the pointer names, or None when nothing was promoted yet."""
        try:
            target = os.readlink(self.pointer)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ModelError(f"{self.pointer}: not a model store pointer ({exc})") from exc
        name = Path(target).name
        return name[: -len(".npz")] if name.endswith(".npz") else name

    def resolve(self, wanted: str) -> str:
        """The one stored id ``wanted`` names (a unique prefix or suffix is enough)."""
        ids = self.ids()
        if wanted in ids:
            return wanted
        hits = [i for i in ids if i.startswith(wanted) or i.endswith(wanted)]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ModelError(f"{self.models}: no model {wanted!r} (see `netanomd model list`)")
        raise ModelError(f"{self.models}: {wanted!r} names {len(hits)} models: {', '.join(hits)}")

    def load(self, model_id: str) -> Model:
        return Model.load(self.path_of(self.resolve(model_id)))

    def load_current(self) -> Model:
        current = self.current_id()
        if current is None:
            raise ModelError(f"{self.root}: no current model (promote one first)")
        return Model.load(self.pointer)

    def stored(self) -> list[StoredModel]:
        current = self.current_id()
        out = []
        for model_id in self.ids():
            path = self.path_of(model_id)
            out.append(StoredModel(model_id, path, _created(model_id), model_id == current))
        return out

    def history(self) -> list[dict[str, Any]]:
        """The promotions and rollbacks, oldest first."""
        try:
            lines = self.history_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for n, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise ModelError(f"{self.history_path}:{n}: not a JSON line ({exc})") from exc
            out.append(entry)
        return out

    def stack(self) -> list[str]:
        """The promoted models still to roll back to, bottom first (the top is current)."""
        stack: list[str] = []
        for entry in self.history():
            if entry.get("action") == "promote":
                stack.append(str(entry["model"]))
            elif entry.get("action") == "rollback" and stack:
                stack.pop()
        return stack

    # -- writing ----------------------------------------------------------------------------
    def add(self, model: Model) -> str:
        """Keep ``model`` under its id (an id already stored is the same content)."""
        self.models.mkdir(parents=True, exist_ok=True)
        path = self.path_of(model.model_id)
        if not path.exists():
            model.save(path)
        return model.model_id

    def add_file(self, path: str | os.PathLike[str]) -> str:
        """Check the artifact at ``path`` loads, and keep it under its id."""
        return self.add(Model.load(path))

    def promote(self, model_id: str, reason: str = "") -> str:
        """Make ``model_id`` current (it must load); returns its full id."""
        with self._locked():
            full = self.resolve(model_id)
            Model.load(self.path_of(full))  # never point at a model the daemon would refuse
            self._point(full)
            self.record("promote", full, reason)
        return full

    def rollback(self, reason: str = "") -> str:
        """Make the model current before the last promotion current again; returns its id."""
        with self._locked():
            stack = self.stack()
            if len(stack) < 2:
                raise ModelError(f"{self.root}: no earlier promoted model to roll back to")
            target = stack[-2]
            if not self.path_of(target).exists():
                raise ModelError(f"{self.path_of(target)}: the earlier model is gone")
            Model.load(self.path_of(target))
            self._point(target)
            self.record("rollback", target, reason or f"rolled back from {stack[-1]}")
        return target

    def _point(self, model_id: str) -> None:
        tmp = self.root / f".{POINTER}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(f"{MODELS}/{model_id}.npz", tmp)
        os.replace(tmp, self.pointer)

    def record(self, action: str, model_id: str, reason: str) -> None:
        """Append to the history (``retrain`` records its refusals too)."""
        entry = {"ts": round(time.time(), 3), "action": action, "model": model_id}
        if reason:
            entry["reason"] = reason
        with open_append(self.history_path) as fh:
            fh.write(json.dumps(entry).encode() + b"\n")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _created(model_id: str) -> str:
    """The training time in an id ``kind-YYYYmmddTHHMMSSZ-digest`` ("" for older ids)."""
    parts = model_id.split("-")
    stamp = next((p for p in parts if len(p) == 16 and p.endswith("Z") and "T" in p), "")
    if not stamp:
        return ""
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
