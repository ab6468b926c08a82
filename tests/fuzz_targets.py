"""Fuzz targets over every parser, shared by the CI pass (tests/test_fuzz.py) and the long
passes (benchmarks/fuzz.py).

A target takes one input (bytes: a log line, a Broker frame, a YAML text, a JSON body) and runs
the parser on it the way the daemon does. The contract every target checks:

* the parser returns a result or raises the package's documented error for that input
  (:class:`~netanomd.errors.InputError` and its :class:`~netanomd.zeek.brokerjson.DecodeError`,
  :class:`~netanomd.errors.ConfigError`, :class:`ValueError` for the scoring API), never
  anything else, and never takes longer than :data:`TIME_LIMIT`;
* a stream decoder given the input between two good records of the same block still returns
  both good records (a bad record never takes good ones with it), and what it returns can be
  scored by the model (the feature stage accepts every value a parser lets through).

:func:`check` runs one target on one input and returns None or a :class:`Crash` (a signature
for de-duplication and the traceback). Seeds are the real lines in ``tests/data`` and the
sample configuration; :func:`mutate` derives inputs from them (byte flips, splices, numeric
extremes, Unicode digits, deep nesting, lists where objects belong, empty and huge strings).
"""

from __future__ import annotations

import atexit
import functools
import os
import random
import shutil
import signal
import tempfile
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from netanomd.errors import ConfigError, InputError
from netanomd.flow import FlowBatch
from netanomd.sources import ReadStats

TESTS_DIR = Path(__file__).parent
DATA_DIR = TESTS_DIR / "data"
REPO_DIR = TESTS_DIR.parent
#: Seconds one input may take before it counts as a hang.
TIME_LIMIT = 20.0  # generous: a loaded CI machine must not turn slowness into a "hang"


class Hang(BaseException):
    """An input ran past :data:`TIME_LIMIT` (a BaseException, so no ``except Exception`` in
    the code under test swallows it)."""


class ContractBroken(AssertionError):
    """The parser returned, but broke the contract (a good record lost, unscorable flows)."""


@dataclass
class Crash:
    target: str
    signature: str
    traceback: str
    data: bytes


# -- seeds -------------------------------------------------------------------------------------
def _lines(path: Path) -> list[bytes]:
    return [ln for ln in path.read_bytes().splitlines() if ln.strip()]


@functools.cache
def tsv_header() -> list[bytes]:
    return [ln for ln in _lines(DATA_DIR / "zeek/ssh_sshguess.tsv.conn.log") if ln[:1] == b"#"][:8]


@functools.cache
def tsv_seeds() -> list[bytes]:
    rows = []
    for name in ("ssh_sshguess.tsv.conn.log", "ctu-sme-11-head200.conn.log"):
        rows += [ln for ln in _lines(DATA_DIR / "zeek" / name) if ln[:1] != b"#"]
    width = tsv_header()[-2].count(b"\t") - 1  # the #fields line has "#fields" first
    return [r for r in rows if r.count(b"\t") == width]


@functools.cache
def zeek_json_seeds() -> list[bytes]:
    return _lines(DATA_DIR / "zeek/ssh_sshguess.json.conn.log")


@functools.cache
def eve_seeds() -> list[bytes]:
    return _lines(DATA_DIR / "eve/test6-malicious-head400.json")


@functools.cache
def eve_flow_seeds() -> list[bytes]:
    return [ln for ln in eve_seeds() if b'"event_type":"flow"' in ln]


@functools.cache
def cic_header() -> bytes:
    return _lines(DATA_DIR / "cic/portscan-head50.csv")[0]


@functools.cache
def cic_seeds() -> list[bytes]:
    return _lines(DATA_DIR / "cic/portscan-head50.csv")[1:]


@functools.cache
def zeek_csv_header() -> bytes:
    return _lines(DATA_DIR / "zeek/iot23-44-1.csv")[0]


@functools.cache
def zeek_csv_seeds() -> list[bytes]:
    return _lines(DATA_DIR / "zeek/iot23-44-1.csv")[1:]


@functools.cache
def broker_seeds() -> list[bytes]:
    """``NetAnom::flows`` frames as the Zeek package sends them, made of the real Zeek lines
    (1, 2 and 5 flows a frame), and one ``NetAnom::drain``."""
    from netanomd.sources.zeek_log import zeek_json_lines_to_batch
    from netanomd.zeek import api, brokerjson
    from tests.zeek_wire import flows_message

    lines = zeek_json_seeds()
    frames = []
    for i, n in enumerate((1, 2, 5, 1, 1)):
        batch = zeek_json_lines_to_batch(lines[i * 3 : i * 3 + n], ReadStats(), "seed")
        assert batch is not None
        frames.append(orjson.dumps(flows_message(batch)))
    drain = brokerjson.encode_event(api.DRAIN, {"token": 7}, api.FLOWS_TOPIC)
    frames.append(orjson.dumps(drain))
    return frames


@functools.cache
def config_seeds() -> list[bytes]:
    text = (REPO_DIR / "config/netanomd.yaml").read_bytes()
    small = (
        b"model:\n  path: /tmp/m.npz\n  threshold: 0.6\nsources:\n  - type: suricata_socket\n"
        b"    path: /run/netanomd/eve.sock\n    kind: unix_stream\n"
        b"sinks:\n  sqlite:\n    path: /tmp/a.db\n  elasticsearch:\n"
        b"    hosts: [https://u:p@es:9200]\n    ca_file: null\n"
        b"pipeline:\n  batch_size: 512\nlog_level: info\n"
    )
    anchors = b"x: &a {path: /x}\nsinks:\n  sqlite: *a\n  <<: {}\n"
    return [text, small, anchors]


@functools.cache
def api_seeds() -> list[bytes]:
    lines = zeek_json_seeds()
    many = b"[" + b",".join(lines[:4]) + b"]"
    plain = orjson.dumps(
        {k.removeprefix("id."): v for k, v in orjson.loads(lines[6]).items()}
    )  # orig_h-style names
    iso = orjson.loads(lines[7])
    iso["ts"] = "2015-03-30T14:44:49.213953Z"
    return [lines[0], many, plain, orjson.dumps(iso)]


# -- mutation ----------------------------------------------------------------------------------
#: Values that broke or may break parsers: integer and float extremes, Unicode digits,
#: separators, empty and huge strings, JSON shapes where scalars belong.
TOKENS: tuple[bytes, ...] = (
    b"1152921504606846976",  # 2**60
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551616",
    b"9007199254740993",
    b"-1",
    b"-0",
    b"0",
    b"65536",
    b"1e308",
    b"-1e308",
    b"1e-320",
    b"NaN",
    b"nan",
    b"Infinity",
    b"-inf",
    "٣".encode(),
    "٣/tcp".encode(),
    "²".encode(),
    "\uff11\uff12".encode(),
    b"\xff\xfe",
    b"\x00",
    b"\t",
    b",",
    b'"',
    b"\\",
    b"\\x",
    b"{}",
    b"[]",
    b"[1,2]",
    b'{"a":1}',
    b"null",
    b"true",
    b"-",
    b"(empty)",
    b"/",
    b"80/",
    b"/tcp",
    b"5ms",
    b"1e3s",
    b"-3s",
    b"99999999999999999999ns",
    b"2021-13-45T99:99:99",
    b"1:2:3::ffff",
    b"x" * 70_000,
    b"&a",
    b"*a",
    b"<<: *a",
    b"!!python/object:os.system",
    b"!!binary AAAA",
)

#: JSON values put where another value was.
JSON_VALUES: tuple[Any, ...] = (
    2**60,
    2**63 - 1,
    2**63,
    2**64,
    2**53 + 1,
    -1,
    -(2**63),
    0,
    65536,
    1e308,
    -1e308,
    5e-324,
    0.5,
    True,
    False,
    None,
    "",
    "٣",
    "٣/tcp",
    "80/tcp",
    "-1/udp",
    "99999/tcp",
    "1e3s",
    "-3s",
    "5min",
    "x" * 100_000,
    "2021-06-06T15:59:46+0200",
    "2021-06-06T15:59:46.457984+99:99",
    "::1",
    "1.2.3.4.5",
    [],
    [1, 2],
    {},
    {"@data-type": ["vector"], "data": []},
    {"@data-type": "vector", "data": []},
    {"@data-type": "count", "data": 2**60},
    {"@data-type": "string", "data": None},
    {"@data-type": None},
)


def _deep(n: int, kind: int) -> bytes:
    if kind == 0:
        return b"[" * n + b"]" * n
    if kind == 1:
        return b'{"a":' * n + b"1" + b"}" * n
    return b"[" * n  # unterminated


def _json_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if len(path) >= 64:  # deep enough: a mutated document may nest a thousand levels
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _json_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _json_paths(v, (*path, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        out = dict(value)
        out[head] = _replace(value[head], rest, new)
        return out
    out_list = list(value)
    out_list[head] = _replace(value[head], rest, new)
    return out_list


def _mutate_json(data: bytes, rng: random.Random) -> bytes | None:
    """A structured mutation: one node of the JSON document replaced, deleted or duplicated."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    paths = list(_json_paths(doc))
    path = rng.choice(paths)
    op = rng.randrange(5)
    if op == 0:
        new: Any = rng.choice(JSON_VALUES)
    elif op == 1:  # wrap in a list (a list where an object or scalar belongs)
        new = [_get(doc, path)]
    elif op == 2:  # delete the node (a missing key, a shorter vector)
        if not path:
            return b""
        parent = _get(doc, path[:-1])
        if isinstance(parent, dict):
            parent = {k: v for k, v in parent.items() if k != path[-1]}
        else:
            parent = [v for i, v in enumerate(parent) if i != path[-1]]
        try:
            return orjson.dumps(_replace(doc, path[:-1], parent))
        except (orjson.JSONEncodeError, TypeError):  # nested past orjson's limit
            return None
    elif op == 3:  # an empty container of the same kind, or a copy of another node
        old = _get(doc, path)
        new = type(old)() if isinstance(old, dict | list) else _get(doc, rng.choice(paths))
    else:  # a number where it was, made extreme
        old = _get(doc, path)
        new = rng.choice((2**60, -1, 1e308, 2**64, float(2**53) + 2)) if old is not None else 0
    try:
        out = orjson.dumps(_replace(doc, path, new))
    except (orjson.JSONEncodeError, TypeError):
        return None
    if rng.random() < 0.1:  # numbers JSON cannot spell, as some writers do anyway
        out = out.replace(b"1e308", rng.choice((b"NaN", b"Infinity", b"-Infinity")), 1)
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _mutate_fields(data: bytes, sep: bytes, rng: random.Random) -> bytes:
    parts = data.split(sep)
    i = rng.randrange(len(parts))
    op = rng.randrange(4)
    if op == 0:
        parts[i] = rng.choice(TOKENS)
    elif op == 1:
        parts[i] = parts[i] + rng.choice(TOKENS)
    elif op == 2:
        del parts[i]
    else:
        parts.insert(i, rng.choice(TOKENS))
    return sep.join(parts)


def mutate(data: bytes, rng: random.Random, others: Sequence[bytes] = ()) -> bytes:
    """One to three mutations of ``data`` (structure-aware for JSON and delimited text);
    ``others`` are the other seeds, for splices."""
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(10)
        if op <= 2 and data[:1] in (b"{", b"["):
            data = _mutate_json(data, rng) or data
        elif op <= 4 and (b"\t" in data or b"," in data):
            data = _mutate_fields(data, b"\t" if b"\t" in data else b",", rng)
        elif op == 5 and data:
            i = rng.randrange(len(data))
            data = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
        elif op == 6 and others:
            other = rng.choice(others)
            i, j = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
            data = data[:i] + other[j:] if rng.random() < 0.5 else other[:j] + data[i:]
        elif op == 7:
            i = rng.randrange(len(data) + 1)
            data = data[:i] + rng.choice(TOKENS) + data[i:]
        elif op == 8 and data:
            i = rng.randrange(len(data))
            j = min(len(data), i + rng.randint(1, 64))
            data = data[:i] + data[j:] if rng.random() < 0.5 else data[:j] + data[i:j] + data[j:]
        else:
            i = rng.randrange(len(data) + 1)
            data = data[:i] + _deep(rng.choice((10, 1000, 100_000)), rng.randrange(3)) + data[i:]
    return data


# -- running one input -------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    #: The parser run on one input; raises what it raises.
    run: Callable[[bytes], None]
    #: Exceptions the parser documents for bad input.
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    #: True when the input is one record (a line): newlines are taken out of mutations.
    one_line: bool = False


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang(f"took longer than {TIME_LIMIT} s")


def signature(exc: BaseException) -> str:
    """Exception type and the innermost netanomd (or tests) frame: one per distinct crash."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/netanomd/" in f.filename or "fuzz_targets" in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    at = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    return f"{type(exc).__name__} at {at}"


def check(target: Target, data: bytes, time_limit: float = TIME_LIMIT) -> Crash | None:
    """Run ``target`` on ``data``: None when the contract holds, else the Crash."""
    if target.one_line:
        data = data.replace(b"\n", b" ").replace(b"\r", b" ")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        target.run(data)
    except target.allowed:
        return None
    except (Exception, Hang) as exc:
        return Crash(target.name, signature(exc), traceback.format_exc(), data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return None


# -- the targets -------------------------------------------------------------------------------
@functools.cache
def _model() -> Any:
    from netanomd.data import demo_model

    return demo_model()


def _scorable(batch: FlowBatch | None, where: str) -> None:
    """What a parser returned goes through the feature stage and the detector."""
    if batch is None or len(batch) == 0:
        return
    try:
        _model().run(batch, None, fresh=True)
    except Exception as exc:
        raise ContractBroken(f"{where}: parsed flows cannot be scored ({exc!r})") from exc


def _keeps(batch: FlowBatch | None, uids: Sequence[str], where: str) -> None:
    got = set() if batch is None else set(batch.column("uid").to_pylist())
    lost = [u for u in uids if u not in got]
    if lost:
        raise ContractBroken(f"{where}: good records lost beside the bad one: {lost}")


def _rng_pair(data: bytes, seeds: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Two good seed lines chosen by the input (deterministic)."""
    h = zlib.crc32(data) & 0xFFFF  # not hash(): the same input must pick the same lines
    return seeds[h % len(seeds)], seeds[(h // 7 + 1) % len(seeds)]


def _file(data: bytes, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix="fuzz-", suffix=suffix, dir=_tmpdir())
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(name)


@functools.cache
def _tmpdir() -> str:
    shm = Path("/dev/shm")
    path = tempfile.mkdtemp(prefix="netanomd-fuzz-", dir=shm if shm.is_dir() else None)
    atexit.register(shutil.rmtree, path, True)
    return path


def _read_file(content: bytes) -> FlowBatch | None:
    """The file readers (format sniffing included) on ``content``; InputError when the
    whole file is refused."""
    from netanomd.sources.files import open_source

    path = _file(content)
    try:
        batches = list(open_source(path, batch_size=4).batches())
    finally:
        path.unlink()
    return FlowBatch.concat(batches) if batches else None


def _stream(
    data: bytes, seeds: Sequence[bytes], head: Sequence[bytes], uid: Callable[[bytes], str]
) -> None:
    """A line format: the live decoder and the file reader each get a good line, the input,
    and another good line; both good ones must come back, and all that comes back scores."""
    from netanomd.sources.formats import LineDecoder

    good1, good2 = _rng_pair(data, seeds)
    uids = [uid(good1), uid(good2)]
    block = [*head, good1, data, good2]
    live = LineDecoder("fuzz", ReadStats()).decode(block)
    _keeps(live, uids, "live decoder")
    _scorable(live, "live decoder")
    read = _read_file(b"\n".join(block) + b"\n")
    _keeps(read, uids, "file reader")


def _tsv_uid(line: bytes) -> str:
    return line.split(b"\t")[1].decode()


def run_zeek_tsv(data: bytes) -> None:
    _stream(data, tsv_seeds(), tsv_header(), _tsv_uid)


def run_zeek_json(data: bytes) -> None:
    _stream(data, zeek_json_seeds(), (), lambda ln: str(orjson.loads(ln)["uid"]))


def eve_disagreement(lines: Sequence[bytes]) -> str | None:
    """What the EVE scanner's reading of ``lines`` (flows, alerts joined, skipped events,
    malformed lines and their messages) differs in from the general decoder's, or None."""
    from netanomd.sources.suricata_alerts import SignatureJoin
    from netanomd.sources.suricata_eve import eve_lines_to_batch

    got = []
    for scan in (True, False):
        stats = ReadStats()
        batch = eve_lines_to_batch(lines, stats, "fuzz", 1, SignatureJoin(stats), scan=scan)
        got.append((batch, stats))
    (fast, fast_stats), (slow, slow_stats) = got
    if fast_stats != slow_stats:
        return f"read stats differ: {fast_stats} vs {slow_stats}"
    if (fast is None) != (slow is None):
        return f"one gives no batch: {fast is None} vs {slow is None}"
    if fast is not None and slow is not None and not fast.table.equals(slow.table):
        for name in fast.table.column_names:
            if not fast.column(name).equals(slow.column(name)):
                return f"column {name} differs: {fast.column(name)} vs {slow.column(name)}"
    return None


def run_eve(data: bytes) -> None:
    from netanomd.sources.suricata_eve import parse_eve_line

    _stream(data, eve_flow_seeds(), (), lambda ln: f"S{orjson.loads(ln)['flow_id']}")
    good1, good2 = _rng_pair(data, eve_flow_seeds())
    for lines in ([data], [good1, data, good2]):
        wrong = eve_disagreement(lines)
        if wrong is not None:
            raise ContractBroken(f"the EVE scanner and the general decoder disagree: {wrong}")
    record = parse_eve_line(data, "fuzz")  # one record: a flow, None, or InputError
    if record is not None:
        _scorable(FlowBatch.from_records([record]), "parse_eve_line")


def _csv_file(data: bytes, header: bytes, seeds: Sequence[bytes], uid_col: int) -> None:
    good1, good2 = _rng_pair(data, seeds)
    uids = [good1.split(b",")[uid_col].decode(), good2.split(b",")[uid_col].decode()]
    batch = _read_file(b"\n".join([header, good1, data, good2]) + b"\n")
    _keeps(batch, uids, "file reader")
    _scorable(batch, "file reader")


def run_cicflowmeter(data: bytes) -> None:
    _csv_file(data, cic_header(), cic_seeds(), 0)


def run_zeek_csv(data: bytes) -> None:
    _csv_file(data, zeek_csv_header(), zeek_csv_seeds(), 1)


def run_broker_json(data: bytes) -> None:
    """One frame between two good ones, through the WebSocket client's frame handling (fast
    path, general path, micro-batch); the fast path must give the table the general one gives
    on every frame it takes."""
    from netanomd.zeek import brokerjson
    from netanomd.zeek.brokerjson import DecodeError

    fast = brokerjson.FlowsAccumulator()
    if fast.add_frame(data):
        try:
            slow = brokerjson.flows_to_batch(brokerjson.parse_event(brokerjson.loads(data))[2])
        except DecodeError as exc:
            msg = f"the fast path took a frame the general one refuses: {exc}"
            raise ContractBroken(msg) from exc
        if not fast.build().table.equals(slow.table):
            raise ContractBroken("fast and general paths disagree")
    good = [s for s in broker_seeds() if b"NetAnom::flows" in s]
    good1, good2 = _rng_pair(data, good)
    batches: list[FlowBatch] = []
    client = _ws_client(batches)
    frames = [good1, data, good2]
    try:
        client.take_frames(frames)
    except DecodeError as exc:
        raise ContractBroken(f"a DecodeError escaped the frame handling: {exc}") from exc
    got = FlowBatch.concat(batches) if batches else None
    uids = []
    for frame in (good1, good2):
        args = brokerjson.parse_event(brokerjson.loads(frame))[2]
        uids += brokerjson.flows_to_batch(args).column("uid").to_pylist()
    _keeps(got, uids, "zeek_ws frames")
    _scorable(got, "zeek_ws frames")
    # And the frame alone, decoded as an event (DecodeError is its documented refusal).
    msg = brokerjson.loads(data)
    _, name, args = brokerjson.parse_event(msg)
    if name == "NetAnom::flows":
        _scorable(brokerjson.flows_to_batch(args), "flows_to_batch")


def _ws_client(into: list[FlowBatch]) -> Any:
    from netanomd.sources.zeek_ws import ZeekWebSocketClient

    def emit(batch: FlowBatch, ack: Any = None, *, arrived: float | None = None) -> bool:
        into.append(batch)
        return True

    return ZeekWebSocketClient("ws://127.0.0.1:9/", emit)


def run_config(data: bytes) -> None:
    from netanomd.config import load_config

    path = _file(data, ".yaml")
    try:
        load_config(path, env={})
    finally:
        path.unlink()


def run_score_api(data: bytes) -> None:
    from netanomd.daemon.score_api import score_json

    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return  # the HTTP layer answers 400 before the payload is decoded
    import pyarrow as pa

    try:
        score_json(_model(), None, payload)
    except pa.ArrowException as exc:  # a ValueError too, but one that names no field
        raise ContractBroken(f"an Arrow error instead of a field's error: {exc!r}") from exc


def _targets() -> dict[str, Target]:
    from netanomd.zeek.brokerjson import DecodeError

    ts = [
        Target("zeek-tsv", run_zeek_tsv, (InputError,), tsv_seeds, one_line=True),
        Target("zeek-json", run_zeek_json, (InputError,), zeek_json_seeds, one_line=True),
        Target("eve", run_eve, (InputError,), eve_seeds, one_line=True),
        Target("cicflowmeter", run_cicflowmeter, (InputError,), cic_seeds, one_line=True),
        Target("zeek-csv", run_zeek_csv, (InputError,), zeek_csv_seeds, one_line=True),
        Target("broker-json", run_broker_json, (DecodeError,), broker_seeds),
        Target("config", run_config, (ConfigError,), config_seeds),
        Target("score-api", run_score_api, (ValueError,), api_seeds),
    ]
    return {t.name: t for t in ts}


TARGETS: dict[str, Target] = _targets()
