"""Host behaviour over real time windows: what each host did per minute, 10 minutes and hour.

Owns :class:`HostWindows`, the streaming aggregator. Feed it :class:`~netanomd.flow.FlowBatch`
es in arrival order (a file read in batches and a live stream go through the same code); each
call returns the windows that closed as a :class:`Closed` (numpy columns,
:class:`~netanomd.behaviour.table.Table`): one row per (scale, role, host, window) with the
columns of :data:`WINDOW_COLUMNS`, and one per busy (host, peer, port) pair with those of
:data:`PAIR_COLUMNS`. :meth:`HostWindows.flush` closes what is still open.

Every flow counts for three *roles*:

* ``orig``: the originator (``host`` = ``orig_h``, peers are the responders it contacted);
* ``resp``: the responder, for inbound attacks (peers are the originators that contacted it);
* ``service``: the network-wide service ``proto/port`` (peers are the originators), so a flood
  from spoofed addresses, where no host repeats, is still one aggregate.

Flows to a multicast group count for their originator only (a group is neither a host nor a
server).

Windows are tumbling and aligned on the epoch (a 10-minute window is ten 1-minute ones), keyed by
the flow's *end* (``ts + duration``: Zeek logs a flow when it ends, so ends arrive in order while
starts do not); a flow ending before the open window is counted in it. Distinct counts come from
HyperLogLog sketches (:mod:`netanomd.behaviour.hll`): no cap on how many flows or peers a window
sees. Per (host, peer, port) "pair" the window keeps counts and inter-arrival statistics for
brute force and beaconing (gaps between flow ends, the order flows arrive in), in a table bounded
to the heaviest ``max_pairs`` pairs; pairs count connection attempts (a TCP record repeating the
source port of the pair's previous record, unanswered and without payload, is that attempt
again, not a new one).
Whether a peer is new for a host is answered by a two-generation Bloom filter of (host, peer)
pairs seen before, which forgets the oldest generation when it fills up; a second one of
(host, peer, port) targets counts the probes that reach a target the host never contacted
before (``new_targets``: a scan explores, a client retrying its usual servers does not).

Memory is bounded: ``max_hosts`` host slots (least recently seen idle slot evicted when full),
``max_pairs`` pairs per scale, and the two fixed-size Bloom filters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netanomd.behaviour import _kernels as _k
from netanomd.behaviour.hll import DEFAULT_P, INVERSE_POWERS, HllTable, finish
from netanomd.behaviour.table import Table, objects
from netanomd.features._strings import string_views
from netanomd.flow import FlowBatch

ROLES: tuple[str, ...] = ("orig", "resp", "service")
DEFAULT_SCALES: tuple[float, ...] = (60.0, 600.0, 3600.0)

#: Conn states in which the responder never answered with data (Zeek conn.log docs).
UNANSWERED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR")
_RESET = ("RSTO", "RSTOS0")
#: A "short" connection moves less payload than this each way: a login attempt or a probe, not a
#: transfer (brute force is many short connections to one service).
SHORT_BYTES = 10_000
#: Destinations that never answer by design (multicast, broadcast): silence there is no probe.
MULTICAST = r"^(22[4-9]|23[0-9])\.|^[fF][fF][0-9a-fA-F]{2}:"
NO_REPLY_DESTS = MULTICAST + r"|^255\.255\.255\.255$"
#: Seconds below which two records on one source port cannot be a retransmission of one attempt
#: (TCP's least retransmission timeout is 200 ms).
RETRY_GAP = 0.2
#: Most records one attempt's retransmissions are logged as (a SYN and its 6 retries, Linux's
#: default ``tcp_syn_retries``); a longer chain on one source port is a prober reusing a fixed
#: port, every record an attempt: a chain stands for one attempt, or for each of its records when
#: longer.
RETRY_RECORDS = 7
#: Fewest flows to one peer and port before their inter-arrival regularity means anything.
MIN_BEACON_EVENTS = 6
#: The string columns a batch is coded by (:func:`_coded`).
_CODED = ("orig_h", "resp_h", "proto", "conn_state")
#: Representative flow uids kept per host.
SAMPLES = 5

PROTO_CODE = {"tcp": _k.TCP, "udp": _k.UDP, "icmp": _k.ICMP}
#: Protocol name by code (the code of any other protocol, 0, is "other").
PROTO_NAMES = np.full(max(PROTO_CODE.values()) + 1, "other", dtype=object)
PROTO_NAMES[list(PROTO_CODE.values())] = list(PROTO_CODE)

# Aggregate columns summed per (slot, window).
_SUMS = _k.SUMS
_NEW_PEERS = _SUMS.index("new_peers")
#: What kind of probe: one UDP packet unanswered, a lone SYN unanswered, an ICMP echo request.
PROBE_KINDS: tuple[str, ...] = ("probe_udp1", "probe_syn", "probe_echo")
# HyperLogLog sketches per (slot, window).
_SKETCHES = ("peers", "ports", "probe_peers", "probe_ports", "probe_targets")

WINDOW_COLUMNS: tuple[str, ...] = (
    "scale",
    "role",
    "host",
    "start",
    "end",
    "first_ts",
    "last_ts",
    *_SUMS,
    *_SKETCHES,
    "uids",
    "community_ids",
)
#: :data:`WINDOW_COLUMNS` ``uids`` and ``community_ids`` are (rows, :data:`SAMPLES`) ``object``
#: arrays: the host's latest flows in the window, newest first, None or "" where it holds fewer
#: (:func:`sample_lists` gives one list per row).

#: One row per (scale, role, host, peer, port) with at least MIN_PAIR_FLOWS flows in a window.
#: For the ``resp`` role ``peer`` is the first originator seen (the pair is the local port).
PAIR_COLUMNS: tuple[str, ...] = (
    "scale",
    "role",
    "host",
    "peer",
    "port",
    "proto",
    "start",
    "end",
    "first_ts",
    "last_ts",
    "flows",
    "unanswered",
    "short",
    "period",
    "regularity",
)
#: Fewest flows of a pair for it to be reported in the pair rows.
MIN_PAIR_FLOWS = 4

#: Per-flow originator context (:meth:`HostWindows.update` ``context=``), as it stood when the
#: flow arrived, counting it: whether its responder is new to the originator and how many new
#: responders it reached in the widest window (``new_peers_window`` s); whether it went
#: unanswered, how many attempts the originator made at this peer and port in the ``near_window``
#: (the second scale) and how many of them failed; whether it was a probe, and the originator's
#: probes in that window.
CONTEXT_COLUMNS: tuple[str, ...] = (
    "row",
    "new_peer",
    "new_peers",
    "new_peers_window",
    "unanswered",
    "tries",
    "failed_tries",
    "probe",
    "probes",
    "near_window",
)


#: The SipHash key of :func:`hash_strings` (pandas' default ``hash_key``).
_SIP_KEY = np.frombuffer(b"0123456789123456", dtype="<u8")


def hash_strings(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash per string of ``col`` (a null hashes as ""): SipHash-2-4 of its
    UTF-8 bytes, then the splitmix64 finaliser, the hash ``pandas.util.hash_array`` gives
    (``categorize=False``). Host slots, sketches and Bloom filters key on it, and the known
    beacons of saved thresholds (:func:`~netanomd.behaviour.detectors.beacon_hash`): with
    :func:`netanomd.features._strings.hash_strings` instead, 3 of the estimates in the reasons of
    ``python -m netanomd.behaviour.measure`` move and one ping sweep of 18 hosts reads "15
    hosts", and saved models' known beacons would match nothing."""
    offsets, data, valid = string_views(col)
    return np.asarray(_k.sip_strings(offsets, data, valid, _SIP_KEY[0], _SIP_KEY[1]))


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Combine two uint64 hash arrays into one (order matters)."""
    return np.asarray(_k.mix(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))


@dataclass(frozen=True)
class _Coded:
    """A string column coded: its distinct values (nulls as ""), as Arrow and as ``object``
    numpy arrays, each row's index into them, and how many distinct values it holds besides
    nulls (``pyarrow.compute.count_distinct``)."""

    values: pa.Array
    names: np.ndarray
    codes: np.ndarray
    distinct: int


def _coded(batch: FlowBatch, name: str) -> _Coded:
    """Column ``name`` coded (one pass over the rows: tests on the values then cost the distinct
    values, not the rows)."""
    col = batch.column(name)
    enc = pc.dictionary_encode(col.chunk(0) if col.num_chunks == 1 else col.combine_chunks())
    values, idx = enc.dictionary, enc.indices
    distinct = len(values)
    if idx.null_count:
        at = int(pc.index(values, "").as_py())
        if at < 0:
            at = len(values)
            values = pa.concat_arrays([values, pa.array([""], values.type)])
        idx = idx.fill_null(at)
    names = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    codes = np.asarray(idx.to_numpy(zero_copy_only=False), np.int64)
    return _Coded(values, names, codes, distinct)


#: A conn state's bits (:func:`~netanomd.behaviour._kernels.flow_flags`) by the states that
#: set them.
_STATE_BITS = (
    (frozenset(UNANSWERED_STATES), _k.STATE_UNANSWERED),
    (frozenset(_RESET), _k.STATE_RESET),
    (frozenset(("S0",)), _k.STATE_S0),
)


def _kinds(state: _Coded, proto: _Coded, resp: _Coded) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The coded columns :func:`~netanomd.behaviour._kernels.flow_flags` reads: each one's codes
    and, per distinct value (tested once, not per row), its protocol number (:data:`PROTO_CODE`,
    0 for another), state bits, and destination kind (:data:`MULTICAST`, the broadcast address
    of :data:`NO_REPLY_DESTS`, by a kernel)."""
    pcode = np.array([PROTO_CODE.get(v, 0) for v in proto.names.tolist()], np.int64)
    bits = [sum(b for names, b in _STATE_BITS if v in names) for v in state.names.tolist()]
    offsets, data, _ = string_views(resp.values)
    return (
        (proto.codes, pcode),
        (state.codes, np.array(bits, np.uint8)),
        (resp.codes, np.asarray(_k.dest_kinds(offsets, data))),
    )


class _Numbers:
    """A batch's numeric columns (:meth:`FlowBatch.numeric`), each read once: the tests of a
    batch ask for some more than once."""

    def __init__(self, batch: FlowBatch) -> None:
        self.batch = batch
        self._read: dict[tuple[str, float, type], np.ndarray] = {}

    def __call__(self, name: str, fill: float = 0.0, dtype: type = np.float64) -> np.ndarray:
        key = (name, fill, dtype)
        col = self._read.get(key)
        if col is None:
            col = self._read[key] = self.batch.numeric(name, fill=fill, dtype=dtype)
        return col


def _flags(
    batch: FlowBatch, num: _Numbers, coded: dict[str, _Coded]
) -> tuple[np.ndarray, np.ndarray]:
    """Per flow its ``flags`` bits and protocol number
    (:func:`~netanomd.behaviour._kernels.flow_flags`); ``coded``: the coded columns read so far
    (the others are coded here)."""
    for name in ("conn_state", "proto", "resp_h"):
        if name not in coded:
            coded[name] = _coded(batch, name)
    proto, state, dest = _kinds(coded["conn_state"], coded["proto"], coded["resp_h"])
    flags, pcode = _k.flow_flags(
        proto,
        state,
        dest,
        num("orig_bytes"),
        num("resp_bytes"),
        num("orig_pkts", fill=-1),
        num("resp_pkts", fill=-1),
        num("orig_p", fill=-1, dtype=np.int64),
    )
    return np.asarray(flags), np.asarray(pcode)


def unanswered_mask(batch: FlowBatch) -> np.ndarray:
    """Flows the responder never answered: a state of :data:`UNANSWERED_STATES` (S0, REJ, SH,
    ...) with no payload back, or no responder packet at all. Flows to multicast or broadcast
    addresses do not count (nobody is meant to answer)."""
    flags = _flags(batch, _Numbers(batch), {})[0]
    return np.asarray((flags & _k.UNANSWERED) != 0)


def probe_mask(batch: FlowBatch, unanswered: np.ndarray | None = None) -> np.ndarray:
    """Flows that look like probes: unanswered (``unanswered``, if given: what
    :func:`unanswered_mask` says), a TCP handshake the originator reset without payload
    (connect scan), or an ICMP echo request."""
    flags = _flags(batch, _Numbers(batch), {})[0]
    if unanswered is None:
        return np.asarray((flags & _k.PROBE) != 0)
    return np.asarray(unanswered | ((flags & _k.RESET_OR_ECHO) != 0))


Columns = dict[str, np.ndarray]
#: Originator context (:data:`CONTEXT_COLUMNS`), a numpy array per column.
Context = dict[str, np.ndarray]


def _context_of(parts: list[Context]) -> Context:
    """One context of ``parts`` in order (no parts: every column empty)."""
    full = [p for p in parts if len(p["row"])]
    if len(full) == 1:
        return full[0]
    if not full:
        return {c: np.zeros(0, np.int64 if c == "row" else np.float64) for c in CONTEXT_COLUMNS}
    return {c: np.concatenate([p[c] for p in full]) for c in CONTEXT_COLUMNS}


def _present(uids: list[str | None]) -> list[str | None]:
    """The sample uids a slot holds (neither missing nor empty)."""
    if all(uids):
        return uids
    return [u for u in uids if u] if any(uids) else []


def sample_lists(samples: np.ndarray) -> np.ndarray:
    """One list per row of a (rows, :data:`SAMPLES`) ``uids`` or ``community_ids`` column: the
    ids it holds, newest first (an ``object`` array)."""
    return objects((_present(r) for r in samples.tolist()), len(samples))


def retried(
    port: np.ndarray,
    start: np.ndarray,
    bare: np.ndarray,
    next_port: np.ndarray,
    next_start: np.ndarray,
    next_proto: np.ndarray,
) -> np.ndarray:
    """Whether a pair's next record is the same TCP attempt again: the previous one was bare
    (unanswered, no payload) and the next reuses its source port at least :data:`RETRY_GAP`
    seconds later."""
    return np.asarray(_k.retried(port, start, bare, next_port, next_start, next_proto, RETRY_GAP))


class _Bloom:
    """Two-generation Bloom filter of 64-bit keys (2 probes), ``2**bits`` cells each, one bit a
    cell (8 cells a byte: 1 MiB for the default 2**23, so a batch's probes stay in cache); the
    generations turn when ``2**bits / 8`` keys were added to the current one (~2.5% false
    "seen" at that fill)."""

    def __init__(self, bits: int) -> None:
        self.mask = np.uint64((1 << bits) - 1)
        self.limit = (1 << bits) // 8
        self.cur = np.zeros(max(1, (1 << bits) // 8), dtype=np.uint8)
        self.old = np.zeros_like(self.cur)
        self.filled = 0

    def state(self) -> tuple[np.ndarray, np.ndarray, np.uint64, int, int]:
        """What :func:`~netanomd.behaviour._kernels.bloom_seen` reads and updates."""
        return self.cur, self.old, self.mask, self.limit, self.filled


class _Column:
    """A named column of :class:`_Pairs`: column ``j`` of its ``block`` (a view)."""

    def __init__(self, block: str, j: int) -> None:
        self.block, self.j = block, j

    def __get__(self, pairs: _Pairs, owner: type | None = None) -> np.ndarray:
        return np.asarray(getattr(pairs, self.block)[:, self.j])


#: :class:`_Pairs`' arrays in the order its constructor takes them.
_PAIRS_ARGS = ("key", "peer", "f", "i")


class _Pairs:
    """Per (slot, peer, port) counts and inter-arrival sums: a segment's, or a window's
    (:class:`_PairTable`): each pair's key, peer name, and two blocks, ``f`` of the
    :data:`~netanomd.behaviour._kernels.PAIR_FLOATS` columns and ``i`` of the
    :data:`~netanomd.behaviour._kernels.PAIR_INTS` (so taking or appending rows is four array
    operations, and a kernel reads them all); each column is also an attribute (a view). The
    pair's first and last records (source port, start; whether the last was a bare unanswered
    attempt) let an attempt retried across two segments count once."""

    __slots__ = ("f", "i", "key", "peer")

    n, unans, short, first, last, gsum, gsq, fts, lts, fchain, lchain = (
        _Column("f", j) for j in range(len(_k.PAIR_FLOATS))
    )
    slot, port, proto, fport, lport, lbare, one_chain = (
        _Column("i", j) for j in range(len(_k.PAIR_INTS))
    )

    def __init__(self, key: np.ndarray, peer: np.ndarray, f: np.ndarray, i: np.ndarray) -> None:
        self.key, self.peer, self.f, self.i = key, peer, f, i

    @staticmethod
    def empty(rows: int = 0) -> _Pairs:
        """``rows`` rows, not filled."""
        return _Pairs(
            np.zeros(rows, np.uint64),
            np.zeros(rows, object),
            np.zeros((rows, len(_k.PAIR_FLOATS))),
            np.zeros((rows, len(_k.PAIR_INTS)), np.int64),
        )

    def __len__(self) -> int:
        return len(self.key)

    def take(self, idx: np.ndarray) -> _Pairs:
        return _Pairs(self.key[idx], self.peer[idx], self.f[idx], self.i[idx])

    def head(self, rows: int) -> _Pairs:
        """The first ``rows`` rows (views)."""
        return _Pairs(self.key[:rows], self.peer[:rows], self.f[:rows], self.i[:rows])

    def put(self, at: int, rows: _Pairs) -> None:
        """Write ``rows`` from row ``at`` on."""
        z = at + len(rows)
        self.key[at:z], self.peer[at:z], self.f[at:z], self.i[at:z] = (
            rows.key,
            rows.peer,
            rows.f,
            rows.i,
        )

    @staticmethod
    def concat(parts: list[_Pairs]) -> _Pairs:
        """The rows of ``parts`` in order."""
        if len(parts) == 1:
            return parts[0]
        key, peer, f, i = (np.concatenate([getattr(p, c) for p in parts]) for c in _PAIRS_ARGS)
        return _Pairs(key, peer, f, i)


#: Rows a closed window's pair table keeps allocated for the next window (a live sensor's
#: minute windows then append without allocating; a busy window's rows are let go).
_KEPT_PAIR_ROWS = 4096


class _PairTable:
    """The pairs of one open window: :class:`_Pairs` grown by doubling (rows in arrival order,
    not sorted; up to :data:`_KEPT_PAIR_ROWS` of them stay allocated when the window closes,
    for the next one) and a hash index from key to row, so a batch costs its own pairs, not the
    table's size; :meth:`view` gives the rows, :meth:`sorted` in key order."""

    def __init__(self) -> None:
        self._cols = _Pairs.empty()
        self.size = 0
        self._keys = np.zeros(16, np.uint64)
        self._rows = np.full(16, -1, np.int64)

    def clear(self) -> None:
        self.size = 0
        if len(self._cols) > _KEPT_PAIR_ROWS:  # a busy window's rows go: memory as it was
            self._cols = _Pairs.empty()
        if len(self._keys) == 16:
            self._rows.fill(-1)
        else:
            self._keys = np.zeros(16, np.uint64)
            self._rows = np.full(16, -1, np.int64)

    def view(self) -> _Pairs:
        """Every row (views: writing to them writes the table)."""
        return self._cols.head(self.size)

    def sorted(self) -> _Pairs:
        """Every row, in key order (what a sorted table held)."""
        v = self.view()
        return v.take(np.argsort(v.key, kind="stable"))

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, -1 where absent."""
        return np.asarray(_k.index_find(self._keys, self._rows, keys))

    def merge(self, new: _Pairs, limit: int) -> _Pairs | None:
        """Add ``new``'s pairs that the table holds to their rows, and the others as rows of
        their own if the table has room for them within ``limit`` rows
        (:func:`~netanomd.behaviour._kernels.merge_pairs`); returns those others when it had
        not (none added)."""
        room = min(len(self._cols), limit) - self.size
        pos, fresh, added = _k.merge_pairs(
            (self._keys, self._rows),
            (self._cols.f, self._cols.i, self._cols.key),
            self.size,
            room,
            new.key,
            (new.f, new.i),
            RETRY_GAP,
            RETRY_RECORDS,
        )
        if not fresh:
            return None
        at = None if fresh == len(pos) else np.flatnonzero(pos < 0)
        if not added:
            return new if at is None else new.take(at)
        self._cols.peer[self.size : self.size + fresh] = new.peer if at is None else new.peer[at]
        self.size += fresh
        if 2 * self.size > len(self._keys):  # keep the index at most half full
            self._reindex()
        return None

    def append(self, fresh: _Pairs) -> None:
        """Add pairs whose keys are not in the table."""
        m = len(fresh)
        if self.size + m > len(self._cols):
            grown = _Pairs.empty(max(2 * len(self._cols), self.size + m, 1024))
            grown.put(0, self.view())
            self._cols = grown
        self._cols.put(self.size, fresh)
        self.size += m
        if 2 * self.size > len(self._keys):  # keep the index at most half full
            self._reindex()
        else:
            _k.index_put(self._keys, self._rows, fresh.key, np.arange(self.size - m, self.size))

    def replace(self, pairs: _Pairs) -> None:
        """Hold exactly ``pairs``."""
        self._cols = pairs
        self.size = len(pairs)
        self._reindex()

    def _reindex(self) -> None:
        cap = 16
        while cap < 4 * self.size:
            cap *= 2
        self._keys = np.zeros(cap, np.uint64)
        self._rows = np.full(cap, -1, np.int64)
        _k.index_put(self._keys, self._rows, self._cols.key[: self.size], np.arange(self.size))


class _Open:
    """The open windows of every scale, for every host slot, in arrays stacked by scale (one
    kernel adds a segment to them all): sums, first start and last end, whether active, and
    the HyperLogLog registers of the sketches."""

    def __init__(self, scales: int, slots: int, p: int) -> None:
        # the scale is the last axis: a row's scales share cache lines
        self.p = p
        self.sums = np.zeros((slots, scales, len(_SUMS)))
        self.first = np.full((slots, scales), np.inf)
        self.last = np.full((slots, scales), -np.inf)
        self.active = np.zeros((slots, scales), dtype=np.bool_)
        # per scale, the active slots (in the order they became active) and how many
        self.listed = np.zeros((scales, slots), dtype=np.int64)
        self.count = np.zeros(scales, dtype=np.int64)
        self.registers = np.zeros((slots * len(_SKETCHES), 1 << p, scales), dtype=np.uint8)

    def add(
        self,
        slot: np.ndarray,
        sums: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        ts: np.ndarray,
        end: np.ndarray,
        sketch: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        """Add a segment's rows (``sums``: each row's flags, bytes out and in, whether a new
        peer and a new target; ``sketch``: its peer and port hashes, whether a probe)."""
        flags, out, back, peers, targets = sums
        amounts = (out, back, peers, targets)
        _k.windows_add(
            self.sums,
            self.first,
            self.last,
            self.active,
            self.listed,
            self.count,
            slot,
            flags,
            amounts,
            ts,
            end,
        )
        _k.hll_sketches(self.registers, self.p, len(_SKETCHES), slot, *sketch)


class _Scale:
    """The open window of one time scale, for every host slot (views of :class:`_Open`'s
    arrays at scale ``j``)."""

    def __init__(self, width: float, j: int, open_: _Open, max_pairs: int) -> None:
        self.width = width
        self.bucket = -1
        self.max_pairs = max_pairs
        self.sums = open_.sums[:, j]
        self.first = open_.first[:, j]
        self.last = open_.last[:, j]
        self.active = open_.active[:, j]
        self._listed = open_.listed[j]
        self._count = open_.count[j : j + 1]
        registers = open_.registers[:, :, j]
        self.hll = HllTable(len(registers), open_.p, registers=registers)
        self.pairs = _PairTable()

    def merge_pairs(self, new: _Pairs) -> None:
        """Add a segment's pairs: a pair the window holds is added to its row (by a kernel,
        :func:`~netanomd.behaviour._kernels.merge_pairs`: the old part's last attempt, retried at
        the start of the new part, is one attempt, the new part's record, its outcome, standing
        for it; the records the two parts counted for the joined chain are replaced by what it
        really holds, every record but its outcome a bare attempt: unanswered and short); the
        others are appended, the heaviest kept beyond ``max_pairs``."""
        fresh = self.pairs.merge(new, self.max_pairs)
        if fresh is None:
            return
        if self.pairs.size + len(fresh) > self.max_pairs:  # keep the heaviest pairs
            fresh = fresh.take(np.argsort(fresh.key, kind="stable"))  # ties: by key
            merged = _Pairs.concat([self.pairs.sorted(), fresh])
            keep = np.argpartition(-merged.n, self.max_pairs - 1)[: self.max_pairs]
            self.pairs.replace(merged.take(keep))
        else:
            self.pairs.append(fresh)

    def clear(self, slots: np.ndarray) -> None:
        """Empty the windows of ``slots`` (their pairs stay)."""
        _k.windows_clear(
            self.sums,
            self.first,
            self.last,
            self.activity(),
            self.hll.registers,
            len(_SKETCHES),
            slots,
        )

    def activity(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Whether each slot is active, the active slots listed and how many (what
        :func:`~netanomd.behaviour._kernels.windows_clear` takes)."""
        return self.active, self._listed, self._count

    def any_active(self) -> bool:
        return bool(self._count[0])

    def actives(self) -> np.ndarray:
        """The active slots, in slot order."""
        return np.sort(self._listed[: self._count[0]])


_ROLE_NAMES = np.array(ROLES, dtype=object)


@dataclass(frozen=True)
class _Emitted:
    """A window of one scale as it closed: its width, start and end, its hosts' rows as
    :func:`~netanomd.behaviour._kernels.windows_take` read them (sketches of ``2**p``
    registers), their roles, host names and sample ids, and its busy pairs (in key order) with
    their hosts' roles and names."""

    width: float
    start: float
    end: float
    p: int
    got: np.ndarray
    role: np.ndarray
    host: np.ndarray
    uids: np.ndarray
    cids: np.ndarray
    pairs: _Pairs
    pair_role: np.ndarray
    pair_host: np.ndarray

    @staticmethod
    def hosts(emitted: list[_Emitted]) -> Table:
        """The host rows (:data:`WINDOW_COLUMNS`) of windows that closed, in order: each
        column made once for them all (a live batch closes a window of every host each
        minute)."""
        if not emitted:
            return Table.empty(WINDOW_COLUMNS)
        counts = [len(e.got) for e in emitted]

        def joined(name: str) -> np.ndarray:
            parts = [getattr(e, name) for e in emitted]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        def each(values: list[float]) -> np.ndarray:
            return np.repeat(np.array(values, np.float64), counts)

        got = joined("got")
        k, width = len(_SKETCHES), len(_SUMS)
        est = finish(
            got[:, 2 + width : 2 + width + k].ravel(), got[:, 2 + width + k :].ravel(), emitted[0].p
        )
        read = np.ascontiguousarray(got[:, : 2 + width].T)
        # never more distinct than flows
        est = np.ascontiguousarray(np.minimum(est.reshape(-1, k), read[2][:, None]).T)
        cols: Columns = {
            "scale": each([e.width for e in emitted]),
            "role": joined("role"),
            "host": joined("host"),
            "start": each([e.start for e in emitted]),
            "end": each([e.end for e in emitted]),
            "first_ts": read[0],
            "last_ts": read[1],
        }
        for c, name in enumerate(_SUMS):
            cols[name] = read[2 + c]
        for i, name in enumerate(_SKETCHES):
            cols[name] = est[i]
        cols["uids"] = joined("uids")
        cols["community_ids"] = joined("cids")
        return Table(cols, WINDOW_COLUMNS)

    @staticmethod
    def pair_rows(emitted: list[_Emitted]) -> Table:
        """The busy pair rows (:data:`PAIR_COLUMNS`) of windows that closed, in order, each
        column made once for them all."""
        full = [e for e in emitted if len(e.pairs)]
        if not full:
            return Table.empty(PAIR_COLUMNS)
        counts = [len(e.pairs) for e in full]
        pr = _Pairs.concat([e.pairs for e in full])
        g = np.maximum(pr.n - 1.0, 1.0)
        mean = pr.gsum / g
        var = np.maximum(pr.gsq / g - mean * mean, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cv = np.where(mean > 0, np.sqrt(var) / mean, np.inf)
        regular = np.where(pr.n >= MIN_BEACON_EVENTS, 1.0 / (1.0 + cv), 0.0)

        def each(values: list[float]) -> np.ndarray:
            return np.repeat(np.array(values, np.float64), counts)

        def joined(parts: list[np.ndarray]) -> np.ndarray:
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        cols: Columns = {
            "scale": each([e.width for e in full]),
            "role": joined([e.pair_role for e in full]),
            "host": joined([e.pair_host for e in full]),
            "peer": pr.peer,
            "port": pr.port,
            "proto": PROTO_NAMES[pr.proto],
            "start": each([e.start for e in full]),
            "end": each([e.end for e in full]),
            "first_ts": pr.first,
            "last_ts": pr.last,
            "flows": pr.n,
            "unanswered": pr.unans,
            "short": pr.short,
            "period": mean,
            "regularity": regular,
        }
        return Table(cols, PAIR_COLUMNS)


class HostWindows:
    """Streaming per-host behaviour windows (see the module docstring)."""

    def __init__(
        self,
        scales: tuple[float, ...] = DEFAULT_SCALES,
        *,
        max_hosts: int = 16384,
        max_pairs: int = 200_000,
        p: int = DEFAULT_P,
        bloom_bits: int = 23,
    ) -> None:
        if not scales or any(s <= 0 for s in scales) or max_hosts < 1 or max_pairs < 1:
            raise ValueError("HostWindows needs positive scales, max_hosts >= 1, max_pairs >= 1")
        base = min(scales)
        if any(abs(s / base - round(s / base)) > 1e-9 for s in scales):
            raise ValueError(f"every window scale must be a multiple of the smallest ({base} s)")
        self.scales = tuple(sorted(float(s) for s in scales))
        self.max_hosts = max_hosts
        self._p = p
        self._max_pairs = max_pairs
        self._bloom_bits = bloom_bits
        self.reset()

    def reset(self) -> None:
        """Forget every host and window (a new stream starts)."""
        s = self.max_hosts
        # each slot's key, and an index from key to slot (rebuilt when slots are freed)
        self._key = np.zeros(s, dtype=np.uint64)
        cap = 16
        while cap < 4 * s:
            cap *= 2
        self._index = (np.zeros(cap, np.uint64), np.full(cap, -1, np.int64))
        self._host = np.zeros(s, dtype=object)
        self._role = np.zeros(s, dtype=np.int64)
        self._last_seen = np.full(s, -np.inf)
        self._free = list(range(s - 1, -1, -1))
        self._uids = np.full((s, SAMPLES), None, dtype=object)
        self._cids = np.full((s, SAMPLES), None, dtype=object)
        self._open = _Open(len(self.scales), s, self._p)
        self._scales = [
            _Scale(w, j, self._open, self._max_pairs) for j, w in enumerate(self.scales)
        ]
        self._bloom = _Bloom(self._bloom_bits)
        self._targets = _Bloom(self._bloom_bits)
        self.clock = -np.inf
        self.evictions = 0

    @property
    def hosts(self) -> int:
        """Host slots in use (all roles)."""
        return self.max_hosts - len(self._free)

    # -- host table ---------------------------------------------------------------------
    def _slots(
        self, keys: np.ndarray, hosts: np.ndarray, roles: np.ndarray, t: float
    ) -> np.ndarray:
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        slot_u = np.asarray(_k.index_find(*self._index, uniq))
        missing = np.flatnonzero(slot_u < 0).tolist()
        fresh: list[int] = []  # slots given out since the index was last built
        j = 0
        while j < len(missing):
            i = missing[j]
            evictions = self.evictions
            if not self._free:
                self._evict(max(1, self.max_hosts // 8), slot_u[:i])
            s = self._free.pop()
            self._key[s] = uniq[i]
            self._host[s] = hosts[first[i]]
            self._role[s] = roles[first[i]]
            slot_u[i] = s
            j += 1
            if self.evictions != evictions:  # rebuilt: the later hosts' slots may be freed
                fresh = [s]
                later = np.asarray(_k.index_find(*self._index, uniq[i + 1 :]))
                slot_u[i + 1 :] = later
                missing, j = (i + 1 + np.flatnonzero(later < 0)).tolist(), 0
            else:
                fresh.append(s)
        if fresh:
            _k.index_put(*self._index, self._key[fresh], np.array(fresh, np.int64))
        self._last_seen[slot_u] = t
        return np.asarray(slot_u[inverse], dtype=np.int64)

    def _evict(self, count: int, in_use: np.ndarray) -> None:
        """Free ``count`` slots: idle ones seen least recently first; if too few are idle, the
        stalest open windows are dropped (never a slot this batch already uses)."""
        protected = np.zeros(self.max_hosts, dtype=np.bool_)
        protected[in_use] = True
        active = np.zeros(self.max_hosts, dtype=np.bool_)
        for sc in self._scales:
            active |= sc.active
        order = np.lexsort((self._last_seen, active, protected))
        victims = order[: min(count, int((~protected).sum()))]
        if not len(victims):
            raise RuntimeError("HostWindows: one batch holds more hosts than max_hosts")
        dropped = victims[active[victims]]
        for sc in self._scales:
            if len(dropped):
                sc.clear(dropped)
                kept = sc.pairs.view()
                sc.pairs.replace(kept.take(np.flatnonzero(~np.isin(kept.slot, dropped))))
        self._uids[victims] = None
        self._cids[victims] = None
        self._last_seen[victims] = -np.inf
        self._free.extend(victims.tolist())
        self.evictions += len(victims)
        live = np.ones(self.max_hosts, np.bool_)
        live[self._free] = False
        keys, rows = self._index
        keys[:] = 0
        rows[:] = -1
        at = np.flatnonzero(live)
        _k.index_put(keys, rows, self._key[at], at)

    # -- streaming ----------------------------------------------------------------------
    def times(self, batch: FlowBatch) -> np.ndarray:
        """The clock at each flow of ``batch`` (every flow start time finite): the latest flow
        end so far, never going back."""
        num = _Numbers(batch)
        return self._times(num("ts", fill=np.nan) + np.maximum(num("duration"), 0.0))

    def _times(self, end: np.ndarray) -> np.ndarray:
        """:meth:`times` of flows ending at ``end``."""
        return np.maximum.accumulate(np.maximum(end, self.clock))

    def update(
        self,
        batch: FlowBatch,
        *,
        context: np.ndarray | None = None,
        times: np.ndarray | None = None,
    ) -> Closed:
        """Add a batch (flows in arrival order); returns the windows that closed and, for the
        batch rows in ``context`` (e.g. the flows that alerted), each one's originator context
        as it stood when the flow arrived (:data:`CONTEXT_COLUMNS`, in :attr:`Closed.context`).

        ``times`` (``len(batch) + 1``: the clock at each flow, then at the batch's end) is for a
        batch that is one part of a wider stream's (``netanomd score --jobs``): the windows turn
        with that stream's clock (:meth:`times` of its whole batch), as they would in it."""
        n = len(batch)
        want = np.zeros(n, dtype=np.bool_)
        if context is not None and len(context):
            want[np.asarray(context, dtype=np.int64)] = True
        if n == 0:
            return Closed.empty() if times is None else self._closed(self._turn(times[-1]))
        # Strings are hashed, named and given a slot once per distinct value.
        orig, resp, proto, state = (_coded(batch, c) for c in _CODED)
        # keep every piece's hosts within the table (a batch of few flows cannot hold that many:
        # not counted)
        many = 3 * n > self.max_hosts // 2
        if n > 1 and many and self._distinct(batch, orig, resp) > self.max_hosts // 2:
            half = n // 2
            head = None if times is None else np.append(times[:half], times[half - 1])
            tail = None if times is None else times[half:]
            first = self.update(
                batch.slice(0, half), context=np.flatnonzero(want[:half]), times=head
            )
            second = self.update(batch.slice(half), context=np.flatnonzero(want[half:]), times=tail)
            second.context["row"] += half
            return Closed.concat([first, second])
        num = _Numbers(batch)
        ts = num("ts", fill=np.nan)
        bad = ~np.isfinite(ts)
        if bad.any():
            where = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"flow {where} of the batch (uid {batch.column('uid')[where]}) has no ts"
            )
        flags, pcode = _flags(batch, num, {"conn_state": state, "proto": proto, "resp_h": resp})
        port = num("resp_p", fill=-1, dtype=np.int64)
        orig_p = num("orig_p", fill=-1, dtype=np.int64)
        end, svc_port, ob, rb, short = _k.flow_amounts(
            ts,
            num("duration"),
            num("orig_bytes"),
            num("resp_bytes"),
            (orig_p, port),  # Zeek: ICMP type in orig_p, code in resp_p
            pcode,
            SHORT_BYTES,
        )
        t = self._times(end) if times is None else np.asarray(times[:n], dtype=np.float64)
        orig_v, orig_c = orig.names, orig.codes
        resp_v, resp_c = resp.names, resp.codes
        proto_v, proto_c = proto.names, proto.codes
        unans = (flags & _k.UNANSWERED) != 0
        probe = (flags & _k.PROBE) != 0
        # A multicast group is no host and no server: announcements to it (mDNS, SSDP, Ganglia)
        # count for their senders only. Broadcast stays (a DHCP flood goes to 255.255.255.255).
        unicast = (flags & _k.MULTICAST) == 0
        keep = np.concatenate([np.ones(n, np.bool_), unicast, unicast])
        # a service "proto/port" per distinct pair (ports are -1 to 65535)
        svc_rows, svc_c, svc_at = _k.group_order(
            (proto_c.astype(np.uint64) << np.uint64(32)) + (svc_port + 1).astype(np.uint64)
        )
        svc_first = svc_rows[svc_at]
        svc_v = np.array(
            [f"{proto_v[proto_c[i]]}/{svc_port[i]}" for i in svc_first.tolist()], dtype=object
        )
        ho_v, hr_v = hash_strings(orig.values), hash_strings(resp.values)
        hs_v = hash_strings(pa.array(svc_v, pa.string()))
        p_hash = hs_v[svc_c]  # the service "proto/port" identifies a port
        role_keys = (
            _mix(ho_v, np.full(len(ho_v), 0, np.uint64)),
            _mix(hr_v, np.full(len(hr_v), 1, np.uint64)),
            _mix(hs_v, np.full(len(hs_v), 2, np.uint64)),
        )
        o_end, r_end = len(ho_v), len(ho_v) + len(hr_v)
        slot_v = self._slots(
            np.concatenate(role_keys),
            np.concatenate([orig_v, resp_v, svc_v]),
            np.repeat(np.arange(3), [len(k) for k in role_keys]),
            float(t[-1]),
        )
        # Pair identity: orig (host, responder, port); resp (host, port); service (svc, source).
        slots, peers_h, peer_code, pkey, newkey = _k.role_rows(
            (ho_v, hr_v, hs_v),
            role_keys,
            (slot_v[:o_end], slot_v[o_end:r_end], slot_v[r_end:]),
            (orig_c, resp_c, svc_c),
        )
        # each row's peer, as an index into peer_names
        peer_names = np.concatenate([resp_v, orig_v])

        base = self.scales[0]
        # clipped: a nonsense duration (1e300 s) must not overflow the cast
        minute = np.floor(np.clip(t / base, -(2.0**62), 2.0**62)).astype(np.int64)
        cuts = np.flatnonzero(np.diff(minute)) + 1
        found: list[Context] = []
        emitted: list[_Emitted] = []
        # a segment takes its rows (3 per flow: one per role) of the role rows and of the flows:
        # every segment's, its roles in turn, put in that order once (a segment is then a slice)
        per_role = [slots, peers_h, peer_code, pkey, newkey]
        per_role += [np.concatenate([ob, rb, ob]), np.concatenate([rb, ob, rb])]
        per_flow = [ts, end, svc_port, pcode, orig_p, ob <= 0, probe, unans, short, flags]
        per_flow += [p_hash, t]
        bounds = np.array([0, *cuts.tolist(), n])
        if len(cuts) or not keep.all():
            rows, flow, starts = _k.segment_rows(bounds, keep, n)
            at = starts.tolist()
            per_role = [x[rows] for x in per_role]
            per_flow = [x[flow] for x in per_flow]
            want_all = (rows < n) & want[flow]
        else:  # the usual live batch: one segment, every role kept
            rows = np.arange(3 * n)
            at = [0, 3 * n]
            per_flow = [np.concatenate([x] * 3) for x in per_flow]
            want_all = np.concatenate([want, np.zeros(2 * n, np.bool_)])
        # Representative flows: each segment's latest SAMPLES per host, their ids read at once
        latest, rank, cut = _k.latest(per_role[0], np.asarray(at), self.max_hosts, SAMPLES)
        ids = []
        for name in ("uid", "community_id"):  # Python strings, nulls as ""
            got = batch.column(name).take(rows[latest] % n)
            ids.append(
                (got.fill_null("") if got.null_count else got).to_numpy(zero_copy_only=False)
            )
        sample_slots = per_role[0][latest]
        for i, (a, b) in enumerate(itertools.pairwise(at)):
            first_t = t[bounds[i]]
            for sc in self._scales:
                bk = int(np.floor(first_t / sc.width))
                if bk != sc.bucket:
                    if sc.any_active():
                        emitted.append(self._emit(sc))
                    sc.bucket = bk
            role_rows = [x[a:b] for x in per_role]
            flow_rows = [x[a:b] for x in per_flow]
            want_s = want_all[a:b]
            rows_s = rows[a:b]
            c0, c1 = cut[i], cut[i + 1]
            self._uids[sample_slots[c0:c1], rank[c0:c1]] = ids[0][c0:c1]
            self._cids[sample_slots[c0:c1], rank[c0:c1]] = ids[1][c0:c1]
            slot, peer_h, peer_c, pkey_s, newkey_s, out, back = role_rows
            ts_s, end_s, port_s, pcode_s, orig_p_s, empty, probe_s, unans_s, short_s = flow_rows[:9]
            flags_s, p_hash_s, when = flow_rows[9:]
            self._add_segment(
                rows_s,
                slot,
                ts_s,
                end_s,
                peer_h,
                peer_c,
                port_s,
                pcode_s,
                orig_p_s,
                empty,
                probe_s,
                unans_s,
                short_s,
                pkey_s,
                newkey_s,
                p_hash_all=p_hash_s,
                when=when,
                want=want_s,
                amounts=(flags_s, out, back),
                found=found,
                peer_names=peer_names,
            )
        self.clock = float(t[-1])
        if times is not None:
            emitted += self._turn(times[-1])
        return self._closed(emitted, _context_of(found))

    @staticmethod
    def _distinct(batch: FlowBatch, orig: _Coded, resp: _Coded) -> int:
        """Distinct originators, responders and ports of ``batch`` (bounds its host slots)."""
        ports = int(pc.count_distinct(batch.column("resp_p")).as_py())
        return orig.distinct + resp.distinct + ports

    def _turn(self, clock: float) -> list[_Emitted]:
        """Move the clock on to ``clock`` without flows: the windows it ends close."""
        emitted: list[_Emitted] = []
        self.clock = max(self.clock, float(clock))
        if not np.isfinite(self.clock):
            return emitted
        for sc in self._scales:
            bk = int(np.floor(self.clock / sc.width))
            if bk != sc.bucket:
                if sc.any_active():
                    emitted.append(self._emit(sc))
                sc.bucket = bk
        return emitted

    def flush(self) -> Closed:
        """Close every open window (end of a stream)."""
        return self._closed([self._emit(sc) for sc in self._scales if sc.any_active()])

    @staticmethod
    def _closed(emitted: list[_Emitted], context: Context | None = None) -> Closed:
        """The windows ``emitted`` closed (their host columns assembled once, for them all)."""
        return Closed(
            _Emitted.hosts(emitted),
            _Emitted.pair_rows(emitted),
            _context_of([]) if context is None else context,
        )

    def _add_segment(
        self,
        rows: np.ndarray,
        slot: np.ndarray,
        ts: np.ndarray,
        end: np.ndarray,
        peer_h: np.ndarray,
        peer_code: np.ndarray,
        port: np.ndarray,
        pcode: np.ndarray,
        orig_p: np.ndarray,
        empty: np.ndarray,
        probe: np.ndarray,
        unans: np.ndarray,
        short: np.ndarray,
        pkey: np.ndarray,
        newkey: np.ndarray,
        *,
        p_hash_all: np.ndarray,
        when: np.ndarray,
        want: np.ndarray,
        amounts: tuple[np.ndarray, np.ndarray, np.ndarray],  # flags, bytes out, bytes in
        found: list[Context],
        peer_names: np.ndarray,
    ) -> None:
        flags, out, back = amounts
        # New peers: distinct (host, peer) pairs of this segment never seen before. Rows by
        # pair (pairs in order of first appearance): in arrival order within a pair (a pair is
        # one role's, whose rows arrive in order), and in start order (``c``). New probe
        # targets: distinct (host, peer, port) probed here and never contacted before (a scan
        # explores; a client retrying the servers it always uses does not).
        # Pairs of this segment, with inter-arrival sums of their arrival (event) times: flows
        # arrive by end, so these gaps are the same however the stream is cut into batches.
        # Pairs count connection *attempts*: a TCP record on the source port of the pair's
        # previous record, an unanswered one that carried no payload, at least a retransmission
        # timer later (RETRY_GAP), is that attempt again: its SYN retransmitted after Zeek
        # closed the first record, or the retry a stack makes after a reset. The attempt's last
        # record (its outcome) stands for it. Records sooner than that, or a chain longer than
        # RETRY_RECORDS, are attempts of their own (a flood or a prober from one fixed port).
        # Attempts are found in start order (records of one attempt start in turn), the pair's
        # statistics taken in arrival order.
        (
            hosts_new,
            new_target,
            pair,
            raw_start,
            c,
            starts,
            head,
            stats,
            ints,
            length,
            self._bloom.filled,
            self._targets.filled,
        ) = _k.segment(
            newkey,
            pkey,
            self._bloom.state(),
            self._targets.state(),
            (ts, orig_p, pcode, when, unans, empty),
            (probe, short),
            (slot, port),
            RETRY_GAP,
            RETRY_RECORDS,
        )
        seg_pairs = _Pairs(pkey[head], peer_names[peer_code[head]], stats, ints)
        if want.any():
            first = c[raw_start]  # each pair's first record here: maybe an older attempt's retry
            found.append(
                self._context(
                    rows,
                    slot,
                    pkey,
                    pair,
                    unans,
                    probe,
                    starts,
                    want,
                    hosts_new,
                    (
                        first,
                        orig_p[first],
                        ts[first],
                        pcode[first],
                        length[raw_start] <= RETRY_RECORDS,
                    ),
                )
            )
        self._open.add(
            slot, (flags, out, back, hosts_new, new_target), ts, end, (peer_h, p_hash_all, probe)
        )
        for sc in self._scales:
            sc.merge_pairs(seg_pairs)

    def _context(
        self,
        rows: np.ndarray,
        slot: np.ndarray,
        pkey: np.ndarray,
        pair: np.ndarray,
        unans: np.ndarray,
        probe: np.ndarray,
        starts: np.ndarray,
        want: np.ndarray,
        new_peer: np.ndarray,
        firsts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> Context:
        """Originator context of the ``want`` rows of a segment, counting the segment's flows up
        to and including each one (rows are in arrival order) on top of the open windows;
        ``firsts`` are each pair's first record here (row, source port, start, protocol, short
        chain), which continue the window's last attempt at the pair when it is retried."""
        wide, near = self._scales[-1], self._scales[min(1, len(self._scales) - 1)]
        hosts = self.max_hosts
        w = np.flatnonzero(want)
        sw = slot[w]
        new_peers = wide.sums[sw, _NEW_PEERS] + _k.running(slot, new_peer, hosts)[w]
        probes = near.sums[sw, _SUMS.index("probes")] + _k.running(slot, probe, hosts)[w]
        old = near.pairs.view()
        tries = np.zeros(len(w))
        failed = np.zeros(len(w))
        if len(old.key):

            def find(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                pos = near.pairs.find(keys)
                return np.maximum(pos, 0), pos >= 0

            pos, hit = find(pkey[w])
            tries = np.where(hit, old.n[pos], 0.0)
            failed = np.where(hit, old.unans[pos], 0.0)
            row, port, start, proto, short = firsts
            p, h = find(pkey[row])
            go_on = (
                h & short & retried(old.lport[p], old.lts[p], old.lbare[p] != 0, port, start, proto)
            )
            starts = starts.copy()
            starts[row[go_on]] = False
        groups = int(pair.max()) + 1
        tries = tries + _k.running(pair, starts, groups)[w]
        failed = failed + _k.running(pair, starts & unans, groups)[w]
        return {
            "row": rows[w],
            "new_peer": new_peer[w],
            "new_peers": new_peers,
            "new_peers_window": np.full(len(w), wide.width),
            "unanswered": unans[w],
            "tries": tries,
            "failed_tries": failed,
            "probe": probe[w],
            "probes": probes,
            "near_window": np.full(len(w), near.width),
        }

    def _emit(self, sc: _Scale) -> _Emitted:
        """``sc``'s closing window, read (:class:`_Emitted`); empties it."""
        act = sc.actives()
        pairs = self._busy(sc)
        got = _k.windows_take(
            sc.sums,
            sc.first,
            sc.last,
            sc.activity(),
            sc.hll.registers,
            len(_SKETCHES),
            act,
            INVERSE_POWERS,
        )
        emitted = _Emitted(
            width=sc.width,
            start=sc.bucket * sc.width,
            end=(sc.bucket + 1) * sc.width,
            p=sc.hll.p,
            got=got,
            role=_ROLE_NAMES[self._role[act]],
            host=self._host[act],
            uids=self._uids[act],  # listed only for the windows detected
            cids=self._cids[act],
            pairs=pairs,
            pair_role=_ROLE_NAMES[self._role[pairs.slot]],
            pair_host=self._host[pairs.slot],
        )
        sc.pairs.clear()
        return emitted

    @staticmethod
    def _busy(sc: _Scale) -> _Pairs:
        """The pairs of ``sc``'s window with at least :data:`MIN_PAIR_FLOWS` flows, in key
        order."""
        v = sc.pairs.view()
        busy = np.flatnonzero(v.n >= MIN_PAIR_FLOWS)
        return v.take(busy[np.argsort(v.key[busy], kind="stable")])


@dataclass
class Closed:
    """Windows that closed: one row per host window (:data:`WINDOW_COLUMNS`), and the pairs that
    were busy in them (:data:`PAIR_COLUMNS`); with the originator context of the flows an update
    was asked about (:data:`Context`: a numpy array per column: it is made for every batch with
    alerts)."""

    hosts: Table
    pairs: Table
    context: Context = field(default_factory=lambda: _context_of([]))

    @staticmethod
    def concat(parts: list[Closed]) -> Closed:
        """One :class:`Closed` of ``parts`` in order (empty tables add nothing)."""
        return Closed(
            Table.concat([p.hosts for p in parts], WINDOW_COLUMNS),
            Table.concat([p.pairs for p in parts], PAIR_COLUMNS),
            _context_of([p.context for p in parts]),
        )

    @staticmethod
    def empty() -> Closed:
        return Closed(Table.empty(WINDOW_COLUMNS), Table.empty(PAIR_COLUMNS))
