"""The versioned model store and ``netanomd model``: real models, promotion through an atomic
symlink swap that a reader never sees half done, rollback as a stack, and clear refusals."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from netanomd.cli import main
from netanomd.data import demo_model
from netanomd.errors import ModelError
from netanomd.model import Model
from netanomd.model.store import ModelStore


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three different real models (seeds 1-3 of the demo model) as artifact files."""
    root = tmp_path_factory.mktemp("artifacts")
    paths = []
    for seed in (1, 2, 3):
        path = root / f"seed{seed}.npz"
        demo_model(seed=seed).save(path)
        paths.append(path)
    return paths


def test_promote_and_roll_back_as_a_stack(tmp_path: Path, models: list[Path]) -> None:
    store = ModelStore(tmp_path / "store")
    assert store.current_id() is None and store.stored() == []
    a, b, c = (store.add_file(p) for p in models)
    assert store.add_file(models[0]) == a  # the same content is the same id, stored once
    assert len(list(store.models.glob("*.npz"))) == 3
    for model_id in (a, b, c):
        store.promote(model_id, f"because {model_id[-4:]}")
    assert os.readlink(store.pointer) == f"models/{c}.npz"
    assert Model.load(store.pointer).model_id == c == store.load_current().model_id
    assert store.stack() == [a, b, c]
    assert [m.model_id for m in store.stored() if m.current] == [c]
    assert store.rollback() == b and store.current_id() == b
    assert store.rollback("bad week") == a and store.current_id() == a
    with pytest.raises(ModelError, match="no earlier promoted model to roll back to"):
        store.rollback()
    assert store.promote(c[-12:]) == c  # a unique part of an id is enough
    assert store.stack() == [a, c]
    actions = [(e["action"], e["model"], e.get("reason", "")) for e in store.history()]
    assert actions[3:] == [
        ("rollback", b, f"rolled back from {c}"),
        ("rollback", a, "bad week"),
        ("promote", c, ""),
    ]


def test_refusals_name_what_is_wrong(tmp_path: Path, models: list[Path]) -> None:
    store = ModelStore(tmp_path / "store")
    a, b = store.add_file(models[0]), store.add_file(models[1])
    store.promote(a)
    with pytest.raises(ModelError, match=r"'iforest-' names 2 models"):
        store.promote("iforest-")
    with pytest.raises(ModelError, match=r"no model 'nope' \(see `netanomd model list`\)"):
        store.promote("nope")
    # A stored model that no longer loads is never pointed at.
    data = bytearray(store.path_of(b).read_bytes())
    data[len(data) // 2] ^= 0xFF
    store.path_of(b).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=b):
        store.promote(b)
    assert store.current_id() == a and store.stack() == [a]
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ModelError, match=r"junk\.npz: not a netanomd model artifact"):
        store.add_file(junk)
    (store.root / "history.jsonl").write_text('{"action": "promote", "model": "x"}\nnot json\n')
    with pytest.raises(ModelError, match=r"history.jsonl:2: not a JSON line"):
        store.stack()


def test_readers_never_see_a_half_swapped_pointer(tmp_path: Path, models: list[Path]) -> None:
    """A reader loading the pointer in a loop (as the daemon does on a change) while the
    current model flips back and forth always gets one of the two models, whole."""
    store = ModelStore(tmp_path / "store")
    a, b = store.add_file(models[0]), store.add_file(models[1])
    store.promote(a)
    loaded: list[str] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                loaded.append(Model.load(store.pointer).model_id)
            except BaseException as exc:  # any failure is the finding
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(15):
        store.promote(b)
        store.rollback()
    done.set()
    reader.join()
    assert errors == [] and loaded and set(loaded) <= {a, b}
    assert store.current_id() == a


def test_model_command(
    tmp_path: Path, models: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    cfg = tmp_path / "netanomd.yaml"
    cfg.write_text(json.dumps({"model": {"store": str(root)}}))
    assert main(["model", "-c", str(cfg), "list"]) == 0
    assert capsys.readouterr().out == f"no models in {root / 'models'}\n"
    assert main(["model", "--store", str(root), "promote", str(models[0])]) == 0
    first = Model.load(models[0]).model_id
    assert capsys.readouterr().out == f"current: {first} (was none)\n"
    assert main(["model", "--store", str(root), "add", str(models[1])]) == 0
    second = Model.load(models[1]).model_id
    assert capsys.readouterr().out == f"added {second}\n"
    assert main(["model", "-c", str(cfg), "promote", second, "--reason", "weekly"]) == 0
    assert capsys.readouterr().out == f"current: {second} (was {first})\n"
    assert main(["model", "-c", str(cfg), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == sorted(
        [f"  {first}  trained {_trained(first)}", f"* {second}  trained {_trained(second)}"]
    )
    assert main(["model", "-c", str(cfg), "show"]) == 0
    show = capsys.readouterr().out
    assert show.startswith(f"model      {second} (current)\n")
    assert "window     7,124 flows, 2023-02-20 00:02:09 → 2023-02-20 17:18:18 UTC" in show
    assert "threshold  " in show and "0.995 quantile" in show
    assert "drift      training window stored" in show
    assert show.rstrip().endswith("promote: weekly")
    assert main(["model", "-c", str(cfg), "rollback"]) == 0
    assert capsys.readouterr().out == f"current: {first} (rolled back from {second})\n"
    assert main(["model", "-c", str(cfg), "rollback"]) == 2
    assert "no earlier promoted model" in capsys.readouterr().err


def _trained(model_id: str) -> str:
    stamp = model_id.split("-")[1]
    return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
