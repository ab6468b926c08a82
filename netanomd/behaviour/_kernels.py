"""numba kernels of the host windows: the per-row loops over a segment's columns.

Owns the loops :mod:`netanomd.behaviour.windows` runs once per flow row, compiled (``nogil``, so a
daemon's decoding thread runs while a batch is scored; ``cache``, so start-up reuses them): the
address hash (SipHash-2-4 over Arrow's string buffers), hash combining, a flow's kinds and
amounts from its coded columns, its rows for the three roles (slots and keys), a batch's rows
segment by segment, grouping rows by key without sorting, a segment's pairs as connection
attempts (retry chains, per-pair counts and gap sums) and their merge into a window's pair
table, the sums and HyperLogLog registers of every scale's open window in one pass, reading and
emptying a closing window, running counts per group and the latest representative rows per
host. A live batch costs a few of these calls, not a numpy call per column or per segment. Each
gives exactly what the numpy formulation it replaced gave: counts and byte sums are whole
numbers, so their float sums do not depend on the order they are added in, and the gap sums add
in the order numpy's did.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from netanomd.behaviour.hll import register_of, sketch_sums

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)


@nb.njit(cache=True, nogil=True)
def mix1(a: np.uint64, b: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """Two uint64 hashes combined into one (order matters)."""
    x = (a * _K1) ^ (b + _K2 + (a << np.uint64(6)) + (a >> np.uint64(2)))
    x ^= x >> np.uint64(31)
    x *= _K2
    x ^= x >> np.uint64(29)
    return x


@nb.njit(cache=True, nogil=True)
def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """:func:`mix1` of each pair of ``a`` and ``b``."""
    out = np.empty(len(a), np.uint64)
    for i in range(len(a)):
        out[i] = mix1(a[i], b[i])
    return out


@nb.njit(cache=True, nogil=True)
def role_rows(
    hashes: tuple[np.ndarray, np.ndarray, np.ndarray],
    keys: tuple[np.ndarray, np.ndarray, np.ndarray],
    slots: tuple[np.ndarray, np.ndarray, np.ndarray],
    codes: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # pragma: no cover - compiled
    """A batch's rows for the three roles (originator, responder, service; each a value coded
    per flow by ``codes``, with per distinct value its address or service hash, its host key
    and its host slot): per role row (all originators' rows, then responders', then services')
    its slot, its peer's hash (the responder for an originator, else the originator), its peer
    as an index into the responders' then the originators' distinct values, its pair key
    (originator: host, responder and service; responder: host and service; service: host and
    originator) and its (host, peer) key."""
    orig, resp, svc = codes
    n = len(orig)
    n_resp = len(hashes[1])
    slot = np.empty(3 * n, np.int64)
    peer_h = np.empty(3 * n, np.uint64)
    peer = np.empty(3 * n, np.int64)
    pkey = np.empty(3 * n, np.uint64)
    newkey = np.empty(3 * n, np.uint64)
    for i in range(n):
        o, r, s = orig[i], resp[i], svc[i]
        ho, hr, hs = hashes[0][o], hashes[1][r], hashes[2][s]
        k = keys[0][o]
        slot[i], peer_h[i], peer[i] = slots[0][o], hr, r
        pkey[i], newkey[i] = mix1(k, mix1(hr, hs)), mix1(k, hr)
        j = n + i
        k = keys[1][r]
        slot[j], peer_h[j], peer[j] = slots[1][r], ho, o + n_resp
        pkey[j], newkey[j] = mix1(k, hs), mix1(k, ho)
        j = 2 * n + i
        k = keys[2][s]
        slot[j], peer_h[j], peer[j] = slots[2][s], ho, o + n_resp
        pkey[j], newkey[j] = mix1(k, ho), mix1(k, ho)
    return slot, peer_h, peer, pkey, newkey


@nb.njit(cache=True, nogil=True)
def _rotl(x: np.uint64, b: int) -> np.uint64:  # pragma: no cover - compiled
    return (x << np.uint64(b)) | (x >> np.uint64(64 - b))


@nb.njit(cache=True, nogil=True)
def _sip_rounds(
    v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64, rounds: int
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:  # pragma: no cover - compiled
    """``rounds`` SipRounds of the state (2 per message block, 4 to finish: SipHash-2-4)."""
    for _ in range(rounds):
        v0 += v1
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 += v3
        v3 = _rotl(v3, 16) ^ v2
        v0 += v3
        v3 = _rotl(v3, 21) ^ v0
        v2 += v1
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


@nb.njit(cache=True, nogil=True)
def _siphash(data: np.ndarray, start: int, stop: int, k0: np.uint64, k1: np.uint64) -> np.uint64:
    # pragma: no cover - compiled
    """SipHash-2-4 of ``data[start:stop]`` with key (``k0``, ``k1``)."""
    v0 = np.uint64(0x736F6D6570736575) ^ k0
    v1 = np.uint64(0x646F72616E646F6D) ^ k1
    v2 = np.uint64(0x6C7967656E657261) ^ k0
    v3 = np.uint64(0x7465646279746573) ^ k1
    n = stop - start
    whole = start + n - n % 8
    i = start
    while i <= whole:
        if i < whole:
            m = np.uint64(0)
            for k in range(8):
                m |= np.uint64(data[i + k]) << np.uint64(8 * k)
        else:  # the last block: the bytes left and the length in the top byte
            m = np.uint64(n & 0xFF) << np.uint64(56)
            for k in range(stop - whole):
                m |= np.uint64(data[whole + k]) << np.uint64(8 * k)
        v3 ^= m
        v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 2)
        v0 ^= m
        i += 8
    v2 ^= np.uint64(0xFF)
    v0, v1, v2, v3 = _sip_rounds(v0, v1, v2, v3, 4)
    return v0 ^ v1 ^ v2 ^ v3


@nb.njit(cache=True, nogil=True)
def sip_strings(
    offsets: np.ndarray, data: np.ndarray, valid: np.ndarray, k0: np.uint64, k1: np.uint64
) -> np.ndarray:  # pragma: no cover - compiled
    """Per string (``offsets``, ``data``, ``valid`` as
    :func:`netanomd.features._strings.string_views` gives them; a null is ""): SipHash-2-4 of
    its UTF-8 bytes, then the splitmix64 finaliser."""
    n = len(offsets) - 1
    check = valid.shape[0] > 0
    out = np.empty(n, np.uint64)
    for r in range(n):
        h = _siphash(data, offsets[r], offsets[r + 1], k0, k1)
        if check and not valid[r]:
            h = _siphash(data, 0, 0, k0, k1)
        out[r] = _spread(h)
    return out


@nb.njit(cache=True, nogil=True)
def running(group: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:  # pragma: no cover
    """Per row, the sum of ``values`` over the rows so far (this one included) of its group
    (``group`` in ``[0, groups)``; only the groups present are cleared: a segment's few hosts
    among many slots)."""
    acc = np.empty(groups)
    for i in range(len(group)):
        acc[group[i]] = 0.0
    out = np.empty(len(group))
    for i in range(len(group)):
        g = group[i]
        acc[g] += values[i]
        out[i] = acc[g]
    return out


#: Columns a window sums per slot, in :func:`windows_add`'s order.
SUMS: tuple[str, ...] = (
    "flows",
    "unanswered",
    "probes",
    "bytes_out",
    "bytes_in",
    "new_peers",
    "probe_udp1",
    "probe_syn",
    "probe_echo",
    "new_targets",
)
#: Bits of a row's ``flags`` (:func:`flow_flags`, :func:`windows_add`): unanswered, probe, then
#: the probe kinds (``probe_udp1``, ``probe_syn``, ``probe_echo``); a probe for a reset handshake
#: or a ping (whether or not unanswered); to a multicast group.
UNANSWERED, PROBE, UDP1, SYN, ECHO, RESET_OR_ECHO, MULTICAST = 1, 2, 4, 8, 16, 32, 64
#: Bits of a conn state (:func:`flow_flags`): an unanswered one, a reset one, S0.
STATE_UNANSWERED, STATE_RESET, STATE_S0 = 1, 2, 4
#: Protocol numbers :func:`flow_flags` tests; the ICMP echo request's type (v4, v6): a ping is a
#: probe whether or not it is answered.
TCP, UDP, ICMP = 6, 17, 1
ICMP_ECHO_V4, ICMP_ECHO_V6 = 8, 128
#: Destination kinds (:func:`dest_kinds`): a multicast group, the broadcast address.
MULTICAST_DEST, BROADCAST_DEST = 1, 2


@nb.njit(cache=True, nogil=True)
def flow_flags(
    proto: tuple[np.ndarray, np.ndarray],
    state: tuple[np.ndarray, np.ndarray],
    dest: tuple[np.ndarray, np.ndarray],
    orig_bytes: np.ndarray,
    resp_bytes: np.ndarray,
    orig_pkts: np.ndarray,
    resp_pkts: np.ndarray,
    orig_p: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per flow, its ``flags`` bits and its protocol number; ``proto``, ``state``, ``dest``: a
    coded column's codes and, per code, its protocol number, state bits (``STATE_*``), and
    destination kind (:func:`dest_kinds`); the numbers as the windows read them (nulls: bytes
    0, packets and ports -1). Unanswered: an unanswered state without payload back, or no
    responder packet, and not to a multicast or broadcast address; probe: unanswered, a TCP
    handshake reset without payload either way, or an ICMP echo request (type 8, 128)."""
    n = len(orig_bytes)
    flags = np.empty(n, np.uint8)
    pcode = np.empty(n, np.int64)
    for i in range(n):
        p = proto[1][proto[0][i]]
        st = state[1][state[0][i]]
        d = dest[1][dest[0][i]]
        rb = resp_bytes[i]
        unans = ((st & STATE_UNANSWERED) != 0 and rb <= 0) or resp_pkts[i] == 0
        unans = unans and d == 0
        empty = orig_bytes[i] <= 0 and rb <= 0
        reset = p == TCP and empty and (st & STATE_RESET) != 0
        op = orig_p[i]
        echo = p == ICMP and op in (ICMP_ECHO_V4, ICMP_ECHO_V6)
        opk = orig_pkts[i]
        f = 0
        if unans:
            f |= UNANSWERED
        if unans or reset or echo:
            f |= PROBE
        if p == UDP and unans and opk == 1:
            f |= UDP1
        if p == TCP and (st & STATE_S0) != 0 and opk <= 2:
            f |= SYN
        if echo:
            f |= ECHO
        if reset or echo:
            f |= RESET_OR_ECHO
        if d == MULTICAST_DEST:
            f |= MULTICAST
        flags[i] = f
        pcode[i] = p
    return flags, pcode


@nb.njit(cache=True, nogil=True)
def flow_amounts(
    ts: np.ndarray,
    duration: np.ndarray,
    orig_bytes: np.ndarray,
    resp_bytes: np.ndarray,
    ports: tuple[np.ndarray, np.ndarray],
    pcode: np.ndarray,
    short_bytes: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # pragma: no cover - compiled
    """Per flow: its end (start plus duration, a negative duration 0), its service port (the
    responder's; for ICMP the originator's, the type), its bytes out and in (negative: 0), and
    whether it is short (under ``short_bytes`` each way); ``ports``: source, destination."""
    n = len(ts)
    end = np.empty(n)
    svc = np.empty(n, np.int64)
    out = np.empty(n)
    back = np.empty(n)
    short = np.empty(n, np.bool_)
    for i in range(n):
        end[i] = ts[i] + _maximum(duration[i], 0.0)
        svc[i] = ports[0][i] if pcode[i] == ICMP else ports[1][i]
        out[i] = _maximum(orig_bytes[i], 0.0)
        back[i] = _maximum(resp_bytes[i], 0.0)
        short[i] = out[i] < short_bytes and back[i] < short_bytes
    return end, svc, out, back, short


@nb.njit(cache=True, nogil=True)
def windows_add(
    sums: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    active: np.ndarray,
    listed: np.ndarray,
    count: np.ndarray,
    slot: np.ndarray,
    flags: np.ndarray,
    amounts: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ts: np.ndarray,
    end: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Add each row to its slot's :data:`SUMS` in the open window of every scale (``sums``:
    slots x scales x SUMS; ``amounts``: bytes out, bytes in, new peers, new targets); the
    slot's first start, last end (slots x scales); mark it active, a slot newly active listed
    at ``listed[scale, count[scale]]`` (``count``: how many are listed per scale)."""
    out, back, peers, targets = amounts
    for i in range(len(slot)):
        s = slot[i]
        f = flags[i]
        for j in range(sums.shape[1]):
            sums[s, j, 0] += 1.0
            sums[s, j, 1] += (f & UNANSWERED) != 0
            sums[s, j, 2] += (f & PROBE) != 0
            sums[s, j, 3] += out[i]
            sums[s, j, 4] += back[i]
            sums[s, j, 5] += peers[i]
            sums[s, j, 6] += (f & UDP1) != 0
            sums[s, j, 7] += (f & SYN) != 0
            sums[s, j, 8] += (f & ECHO) != 0
            sums[s, j, 9] += targets[i]
            if ts[i] < first[s, j]:
                first[s, j] = ts[i]
            if end[i] > last[s, j]:
                last[s, j] = end[i]
            if not active[s, j]:
                active[s, j] = True
                listed[j, count[j]] = s
                count[j] += 1


@nb.njit(cache=True, nogil=True)
def windows_clear(
    sums: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    active: tuple[np.ndarray, np.ndarray, np.ndarray],
    registers: np.ndarray,
    sketches: int,
    slots: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Empty the open window of ``slots`` in one scale (``sums``: slots x SUMS; ``first``,
    ``last`` per slot; ``active``: whether each slot is, the active slots listed and how many
    (:func:`windows_add`'s, of this scale); ``registers``: the scale's sketches, ``sketches`` a
    slot): no flows, no first start or last end, inactive and unlisted, every sketch register
    zero."""
    on, listed, count = active
    for k in range(len(slots)):
        s = slots[k]
        sums[s, :] = 0.0
        first[s] = np.inf
        last[s] = -np.inf
        on[s] = False
        for i in range(sketches):
            registers[s * sketches + i, :] = 0
    kept = 0
    for k in range(count[0]):
        if on[listed[k]]:
            listed[kept] = listed[k]
            kept += 1
    count[0] = kept


@nb.njit(cache=True, nogil=True)
def windows_take(
    sums: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    active: tuple[np.ndarray, np.ndarray, np.ndarray],
    registers: np.ndarray,
    sketches: int,
    slots: np.ndarray,
    inverse: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """Read, then empty (:func:`windows_clear`), the open window of ``slots`` in one scale (the
    arrays as :func:`windows_clear` takes them): per slot a row of its first start, last end,
    :data:`SUMS`, then of each sketch its :func:`~netanomd.behaviour.hll.sketch_sums` sum, then
    of each its zero registers (``inverse``: :data:`~netanomd.behaviour.hll.INVERSE_POWERS`)."""
    width = sums.shape[1]
    out = np.empty((len(slots), 2 + width + 2 * sketches))
    m = registers.shape[1]
    v = np.empty(m)
    blocks = np.empty(max(1, m // 128))
    for k in range(len(slots)):
        s = slots[k]
        out[k, 0] = first[s]
        out[k, 1] = last[s]
        for c in range(width):
            out[k, 2 + c] = sums[s, c]
        for i in range(sketches):
            total, zeros = sketch_sums(registers, s * sketches + i, inverse, v, blocks)
            out[k, 2 + width + i] = total
            out[k, 2 + width + sketches + i] = zeros
    windows_clear(sums, first, last, active, registers, sketches, slots)
    return out


@nb.njit(cache=True, nogil=True)
def _put_all(reg: np.ndarray, row: int, h: np.uint64, p: int) -> None:  # pragma: no cover
    """:func:`~netanomd.behaviour.hll.put` into sketch ``row`` of every scale (``reg``: sketches
    x registers x scales), the register and rank found once."""
    idx, rank = register_of(h, p)
    for j in range(reg.shape[2]):
        if rank > reg[row, idx, j]:
            reg[row, idx, j] = rank


@nb.njit(cache=True, nogil=True)
def hll_sketches(
    reg: np.ndarray,
    p: int,
    sketches: int,
    slot: np.ndarray,
    peer: np.ndarray,
    port: np.ndarray,
    probe: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The window sketches of each row, in every scale (``reg``: sketches x registers x
    scales): peers, ports; for probes also probed peers, probed ports and probed (peer,
    port) targets (sketch ``slot * sketches + i``, i in that order)."""
    for i in range(len(slot)):
        base = slot[i] * sketches
        _put_all(reg, base, peer[i], p)
        _put_all(reg, base + 1, port[i], p)
        if probe[i]:
            _put_all(reg, base + 2, peer[i], p)
            _put_all(reg, base + 3, port[i], p)
            _put_all(reg, base + 4, mix1(peer[i], port[i]), p)


@nb.njit(cache=True, nogil=True)
def first_of(keys: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """Whether each row is the first with its key (keys are well-mixed 64-bit hashes)."""
    size = 1
    while size < 2 * len(keys):
        size *= 2
    mask = np.uint64(size - 1)
    wrap = np.int64(size - 1)
    table = np.empty(size, np.uint64)
    used = np.zeros(size, np.bool_)
    out = np.zeros(len(keys), np.bool_)
    for i in range(len(keys)):
        k = keys[i]
        j = np.int64(k & mask)
        while used[j] and table[j] != k:
            j = (j + np.int64(1)) & wrap
        if not used[j]:
            used[j] = True
            table[j] = k
            out[i] = True
    return out


@nb.njit(cache=True, nogil=True)
def _spread(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    """The splitmix64 finaliser (a bijection: distinct keys stay distinct)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@nb.njit(cache=True, nogil=True)
def group_order(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # pragma: no cover - compiled
    """Rows grouped by key without sorting the keys: (rows, groups numbered in order of first
    appearance and each group's rows in row order; each row's group; where each group starts
    in the rows). Any 64-bit keys (spread by the splitmix64 finaliser to find their place)."""
    n = len(keys)
    size = 1
    while size < 2 * n:
        size *= 2
    mask = np.uint64(size - 1)
    wrap = np.int64(size - 1)
    table = np.empty(size, np.uint64)
    gid = np.full(size, -1, np.int64)
    group = np.empty(n, np.int64)
    count = np.zeros(n + 1, np.int64)
    groups = 0
    for i in range(n):
        k = keys[i]
        j = np.int64(_spread(k) & mask)
        while gid[j] >= 0 and table[j] != k:
            j = (j + np.int64(1)) & wrap
        if gid[j] < 0:
            gid[j] = groups
            table[j] = k
            groups += 1
        g = gid[j]
        group[i] = g
        count[g + 1] += 1
    start = np.cumsum(count[: groups + 1])
    fill = start[:groups].copy()
    rows = np.empty(n, np.int64)
    for i in range(n):
        g = group[i]
        rows[fill[g]] = i
        fill[g] += 1
    return rows, group, start[:groups]


@nb.njit(cache=True, nogil=True)
def retry1(
    port: int,
    start: float,
    bare: bool,
    next_port: int,
    next_start: float,
    next_proto: int,
    gap: float,
) -> bool:  # pragma: no cover - compiled
    """Whether a pair's next record is the same TCP attempt again
    (:func:`netanomd.behaviour.windows.retried`; ``gap``: its RETRY_GAP)."""
    return (
        bare
        and next_port == port
        and next_port >= 0
        and next_proto == 6
        and next_start - start >= gap
    )


@nb.njit(cache=True, nogil=True)
def retried(
    port: np.ndarray,
    start: np.ndarray,
    bare: np.ndarray,
    next_port: np.ndarray,
    next_start: np.ndarray,
    next_proto: np.ndarray,
    gap: float,
) -> np.ndarray:  # pragma: no cover - compiled
    """:func:`retry1` of each row."""
    out = np.empty(len(port), np.bool_)
    for i in range(len(port)):
        out[i] = retry1(port[i], start[i], bare[i], next_port[i], next_start[i], next_proto[i], gap)
    return out


#: A pair table's columns (:class:`netanomd.behaviour.windows._Pairs`): floats, in its ``f``
#: block; the pair's first and last record's start (``fts``, ``lts``) and retry chain length
#: (``fchain``, ``lchain``).
PAIR_FLOATS: tuple[str, ...] = ("n", "unans", "short", "first", "last", "gsum", "gsq")
PAIR_FLOATS += ("fts", "lts", "fchain", "lchain")
#: Its integers, in its ``i`` block: the pair's host slot, port, protocol, its first and last
#: record's source port, whether the last was a bare attempt and whether its first and last
#: records are one chain (0 or 1).
PAIR_INTS: tuple[str, ...] = ("slot", "port", "proto", "fport", "lport", "lbare", "one_chain")
N, UNANS, SHORT, FIRST, LAST, GSUM, GSQ, FTS, LTS, FCHAIN, LCHAIN = range(len(PAIR_FLOATS))
SLOT, PORT, PROTO, FPORT, LPORT, LBARE, ONE_CHAIN = range(len(PAIR_INTS))


@nb.njit(cache=True, nogil=True)
def pair_stats(
    o: np.ndarray,
    c: np.ndarray,
    group_start: np.ndarray,
    orig_p: np.ndarray,
    bare: np.ndarray,
    ts: np.ndarray,
    proto: np.ndarray,
    when: np.ndarray,
    weights: tuple[np.ndarray, np.ndarray],
    where: tuple[np.ndarray, np.ndarray],
    gap: float,
    most: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # pragma: no cover - compiled
    """A segment's pairs (rows grouped by pair: ``o`` in arrival order, ``c`` in start order,
    groups from ``group_start``) as connection attempts: a record :func:`retry1` says is retried
    by the next one in start order is that attempt again, its last record the outcome, unless
    the chain is longer than ``most`` records (each one an attempt). Returns (per row: whether
    it starts an attempt; per pair: its first outcome row in arrival order, and its
    :data:`PAIR_FLOATS` and :data:`PAIR_INTS` blocks: n, unanswered, short, first, last, gap
    sum, gap square sum of its outcomes in arrival order (``weights``: unanswered, short per
    row), its first and last record in start order, the host slot and port of its first
    outcome (``where``: slot, port per row); per row: the length in records of its chain)."""
    n = len(c)
    groups = len(group_start)
    bounds = np.empty(groups + 1, np.int64)
    bounds[:groups] = group_start
    bounds[groups] = n
    chain = np.empty(n, np.int64)
    again = np.zeros(n, np.bool_)  # position i is retried by position i + 1
    cid = -1
    for g in range(groups):
        for i in range(bounds[g], bounds[g + 1]):
            if i == bounds[g] or not again[i - 1]:
                cid += 1
            chain[i] = cid
            if i + 1 < bounds[g + 1]:
                r, q = c[i], c[i + 1]
                again[i] = retry1(orig_p[r], ts[r], bare[r], orig_p[q], ts[q], proto[q], gap)
    length = np.zeros(cid + 1)
    for i in range(n):
        length[chain[i]] += 1.0
    starts = np.zeros(n, np.bool_)
    outcome = np.zeros(n, np.bool_)
    lengths = np.empty(n)
    for i in range(n):
        lengths[i] = length[chain[i]]
        alone = lengths[i] > most
        first = i == 0 or not again[i - 1] or chain[i - 1] != chain[i]
        starts[c[i]] = first or alone
        outcome[c[i]] = not again[i] or alone
    unans, short = weights
    slot, port = where
    stats = np.zeros((groups, len(PAIR_FLOATS)))
    ints = np.empty((groups, len(PAIR_INTS)), np.int64)
    head = np.empty(groups, np.int64)
    for g in range(groups):
        seen = False
        prev = 0.0
        for k in range(bounds[g], bounds[g + 1]):
            r = o[k]
            if not outcome[r]:
                continue
            t = when[r]
            gap_t = 0.0
            if not seen:
                head[g] = r
                stats[g, FIRST] = t
                stats[g, LAST] = t
                seen = True
            else:
                gap_t = t - prev
                if t > stats[g, LAST]:
                    stats[g, LAST] = t
            prev = t
            stats[g, N] += 1.0
            stats[g, UNANS] += unans[r]
            stats[g, SHORT] += short[r]
            stats[g, GSUM] += gap_t
            stats[g, GSQ] += gap_t * gap_t
        a, z = bounds[g], bounds[g + 1] - 1
        fr, lr, h = c[a], c[z], head[g]
        stats[g, FTS] = ts[fr]
        stats[g, LTS] = ts[lr]
        stats[g, FCHAIN] = lengths[a]
        stats[g, LCHAIN] = lengths[z]
        ints[g, SLOT] = slot[h]
        ints[g, PORT] = port[h]
        ints[g, PROTO] = proto[h]
        ints[g, FPORT] = orig_p[fr]
        ints[g, LPORT] = orig_p[lr]
        ints[g, LBARE] = bare[lr]
        ints[g, ONE_CHAIN] = chain[a] == chain[z]
    return starts, head, stats, ints, lengths


@nb.njit(cache=True, nogil=True)
def segment_rows(
    bounds: np.ndarray, keep: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """A batch's role rows (``r * n + flow`` for the ``n`` flows of each of 3 roles) that
    ``keep`` holds, segment by segment (flows ``bounds[g]`` to ``bounds[g + 1]``), each
    segment's roles in turn: (the rows, their flows, where each segment starts in them and
    their end)."""
    rows = np.empty(3 * n, np.int64)
    flow = np.empty(3 * n, np.int64)
    at = np.empty(len(bounds), np.int64)
    k = 0
    for g in range(len(bounds) - 1):
        at[g] = k
        for r in range(3):
            for f in range(bounds[g], bounds[g + 1]):
                i = r * n + f
                if keep[i]:
                    rows[k] = i
                    flow[k] = f
                    k += 1
    at[len(bounds) - 1] = k
    return rows[:k], flow[:k], at


@nb.njit(cache=True, nogil=True)
def latest(
    slot: np.ndarray, bounds: np.ndarray, slots: int, keep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """In each segment (rows ``bounds[g]`` to ``bounds[g + 1]``), each slot's latest ``keep``
    rows, newest first: (the rows, segment after segment; the rank of each among its slot's in
    its segment; where each segment's start in them, and their end)."""
    count = np.empty(slots, np.int64)  # cleared for the slots present only
    rows = np.empty(len(slot), np.int64)
    rank = np.empty(len(slot), np.int64)
    cut = np.empty(len(bounds), np.int64)
    n = 0
    for g in range(len(bounds) - 1):
        a, z = bounds[g], bounds[g + 1]
        cut[g] = n
        for i in range(a, z):
            count[slot[i]] = 0
        for i in range(z - 1, a - 1, -1):
            s = slot[i]
            if count[s] < keep:
                rows[n] = i
                rank[n] = count[s]
                count[s] += 1
                n += 1
    cut[len(bounds) - 1] = n
    return rows[:n], rank[:n], cut


@nb.njit(cache=True, nogil=True)
def by_key_then(order: np.ndarray, keys: np.ndarray, second: np.ndarray) -> np.ndarray:
    # pragma: no cover - compiled
    """``order`` (rows stably sorted by key; ``keys`` in that order) re-sorted within each run
    of one key by ``second`` (stable): what ``np.lexsort((second, key))`` gives."""
    out = order.copy()
    n = len(order)
    i = 0
    while i < n:
        j = i + 1
        ordered = True
        while j < n and keys[j] == keys[i]:
            if second[order[j]] < second[order[j - 1]]:
                ordered = False
            j += 1
        if not ordered:
            run = order[i:j]
            out[i:j] = run[np.argsort(second[run], kind="mergesort")]
        i = j
    return out


@nb.njit(cache=True, nogil=True)
def index_find(slots: np.ndarray, rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    # pragma: no cover - compiled
    """Row of each key in an open-addressing index (``slots`` keys, ``rows`` their rows, -1
    empty; a power-of-two size); -1 where absent."""
    wrap = np.int64(len(slots) - 1)
    out = np.full(len(keys), -1, np.int64)
    for i in range(len(keys)):
        k = keys[i]
        j = np.int64(k & np.uint64(wrap))
        while rows[j] >= 0:
            if slots[j] == k:
                out[i] = rows[j]
                break
            j = (j + np.int64(1)) & wrap
    return out


@nb.njit(cache=True, nogil=True)
def index_put(slots: np.ndarray, rows: np.ndarray, keys: np.ndarray, at: np.ndarray) -> None:
    # pragma: no cover - compiled
    """Index new (absent) ``keys`` as rows ``at`` (one each)."""
    wrap = np.int64(len(slots) - 1)
    for i in range(len(keys)):
        k = keys[i]
        j = np.int64(k & np.uint64(wrap))
        while rows[j] >= 0:
            j = (j + np.int64(1)) & wrap
        slots[j] = k
        rows[j] = at[i]


@nb.njit(cache=True, nogil=True)
def _has_bit(cells: np.ndarray, at: np.int64) -> bool:  # pragma: no cover - compiled
    return bool(((cells[at >> 3] >> (at & 7)) & 1) != 0)


@nb.njit(cache=True, nogil=True)
def bloom_add(
    cur: np.ndarray, old: np.ndarray, mask: np.uint64, keys: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """For distinct ``keys`` of a two-generation Bloom filter (``cur``, ``old``: one bit a cell;
    probes ``key & mask`` and ``(key >> 32) & mask``): whether each was present before any of
    them was added to ``cur``; all are added."""
    n = len(keys)
    seen = np.empty(n, np.bool_)
    a = np.empty(n, np.int64)
    b = np.empty(n, np.int64)
    for i in range(n):
        a[i] = np.int64(keys[i] & mask)
        b[i] = np.int64((keys[i] >> np.uint64(32)) & mask)
        seen[i] = (_has_bit(cur, a[i]) and _has_bit(cur, b[i])) or (
            _has_bit(old, a[i]) and _has_bit(old, b[i])
        )
    for i in range(n):
        cur[a[i] >> 3] |= np.uint8(1 << (a[i] & 7))
        cur[b[i] >> 3] |= np.uint8(1 << (b[i] & 7))
    return seen


@nb.njit(cache=True, nogil=True)
def bloom_seen(
    cur: np.ndarray, old: np.ndarray, mask: np.uint64, limit: int, filled: int, keys: np.ndarray
) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    """:func:`bloom_add` of distinct ``keys``, then the filter's fill (``filled``: keys added
    to ``cur`` so far, each new one counted): past ``limit`` the generations turn (``old``
    takes ``cur``'s bits, ``cur`` is emptied, the fill restarts). Returns (whether each was
    present, the fill)."""
    seen = bloom_add(cur, old, mask, keys)
    for i in range(len(seen)):
        if not seen[i]:
            filled += 1
    if filled > limit:
        old[:] = cur
        cur[:] = 0
        filled = 0
    return seen, filled


@nb.njit(cache=True, nogil=True)
def segment(
    newkey: np.ndarray,
    pkey: np.ndarray,
    peers: tuple[np.ndarray, np.ndarray, np.uint64, int, int],
    targets: tuple[np.ndarray, np.ndarray, np.uint64, int, int],
    rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    marks: tuple[np.ndarray, np.ndarray],
    where: tuple[np.ndarray, np.ndarray],
    gap: float,
    most: int,
) -> tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    np.ndarray,
    int,
    int,
]:  # pragma: no cover - compiled
    """A segment's rows (one role's rows in arrival order, then the next role's): new peers
    (the first row of each (host, peer) ``newkey`` that the ``peers`` Bloom filter has not
    seen), new probe targets (the first probe of each pair ``pkey`` whose pair the
    ``targets`` filter has not seen), the rows grouped by pair (:func:`group_order`: each
    row's pair, where each pair starts; in start order, :func:`by_key_then`) and the pairs as
    connection attempts (:func:`pair_stats`). ``peers``, ``targets``: a filter's current and
    old generation, mask, fill limit and fill (:func:`bloom_seen`); ``rows``: start, source
    port, protocol, arrival time, unanswered and no payload out; ``marks``: probe and short,
    and the ``where`` of :func:`pair_stats`, are per row too. Returns (new peer, new target, pair,
    pair starts, rows in start order, attempt starts, pair heads, the pairs' float and int
    blocks, chain lengths, then the two filters' fills)."""
    ts, orig_p, pcode, when, unans, empty = rows
    probe, short = marks
    n = len(newkey)
    first = first_of(newkey)
    keys = newkey[first]
    seen, peers_filled = bloom_seen(peers[0], peers[1], peers[2], peers[3], peers[4], keys)
    new_peer = np.zeros(n, np.bool_)
    j = 0
    for i in range(n):
        if first[i]:
            new_peer[i] = not seen[j]
            j += 1
    o, pair, raw_start = group_order(pkey)
    k_sorted = pkey[o]
    seen_t, targets_filled = bloom_seen(
        targets[0], targets[1], targets[2], targets[3], targets[4], k_sorted[raw_start]
    )
    new_target = np.zeros(n, np.bool_)
    probed = np.flatnonzero(probe)
    first_p = first_of(pkey[probed])
    for i in range(len(probed)):
        r = probed[i]
        if first_p[i] and not seen_t[pair[r]]:
            new_target[r] = True
    c = by_key_then(o, k_sorted, ts)
    bare = unans & empty
    starts, head, stats, ints, length = pair_stats(
        o, c, raw_start, orig_p, bare, ts, pcode, when, (unans, short), where, gap, most
    )
    return (
        new_peer,
        new_target,
        pair,
        raw_start,
        c,
        starts,
        head,
        stats,
        ints,
        length,
        peers_filled,
        targets_filled,
    )


@nb.njit(cache=True, nogil=True)
def _minimum(a: float, b: float) -> float:  # pragma: no cover - compiled
    """``np.minimum``'s (NaN propagates)."""
    if np.isnan(a) or np.isnan(b):
        return np.nan
    return a if a <= b else b


@nb.njit(cache=True, nogil=True)
def _maximum(a: float, b: float) -> float:  # pragma: no cover - compiled
    """``np.maximum``'s (NaN propagates)."""
    if np.isnan(a) or np.isnan(b):
        return np.nan
    return a if a >= b else b


@nb.njit(cache=True, nogil=True)
def merge_pairs(
    index: tuple[np.ndarray, np.ndarray],
    old: tuple[np.ndarray, np.ndarray, np.ndarray],
    size: int,
    room: int,
    key: np.ndarray,
    new: tuple[np.ndarray, np.ndarray],
    gap: float,
    records: int,
) -> tuple[np.ndarray, int, bool]:  # pragma: no cover - compiled
    """Add each new pair that a window's pair table holds to its row, in place, as
    :meth:`netanomd.behaviour.windows._Scale.merge_pairs` describes (``gap`` and ``records``:
    its RETRY_GAP and RETRY_RECORDS); the others, if they fit in ``room`` more rows, become
    rows ``size``, ``size + 1``, ... in their order (their keys indexed while the index stays
    at most half full). ``index``: the table's key index (:func:`index_find`); ``old``: its
    :data:`PAIR_FLOATS` and :data:`PAIR_INTS` blocks and keys; ``key``, ``new``: the new
    pairs' keys and blocks. Returns (each one's row before, -1: not held; how many were not
    held; whether they were added)."""
    f, ints, keys = old
    nf, ni = new
    pos = index_find(index[0], index[1], key)
    fresh = 0
    for i in range(len(pos)):
        o = pos[i]
        if o < 0:
            fresh += 1
            continue
        link = retry1(
            ints[o, LPORT],
            f[o, LTS],
            ints[o, LBARE] != 0,
            ni[i, FPORT],
            nf[i, FTS],
            ni[i, PROTO],
            gap,
        )
        a, b = f[o, LCHAIN], nf[i, FCHAIN]
        fix = 0.0
        if link:
            ab = a + b
            fix = (
                (ab if ab > records else 1.0)
                - (a if a > records else 1.0)
                - (b if b > records else 1.0)
            )
        f[o, N] += fix
        f[o, UNANS] += fix
        f[o, SHORT] += fix
        one = link and ni[i, ONE_CHAIN] != 0
        f[o, LCHAIN] = a + b if one else nf[i, LCHAIN]
        ints[o, ONE_CHAIN] = 1 if one and ints[o, ONE_CHAIN] != 0 else 0
        ints[o, LPORT] = ni[i, LPORT]
        f[o, LTS] = nf[i, LTS]
        ints[o, LBARE] = ni[i, LBARE]
        bridge = _maximum(nf[i, FIRST] - f[o, LAST], 0.0)
        f[o, GSUM] += nf[i, GSUM] + bridge
        f[o, GSQ] += nf[i, GSQ] + bridge * bridge
        f[o, N] += nf[i, N]
        f[o, UNANS] += nf[i, UNANS]
        f[o, SHORT] += nf[i, SHORT]
        f[o, FIRST] = _minimum(f[o, FIRST], nf[i, FIRST])
        f[o, LAST] = _maximum(f[o, LAST], nf[i, LAST])
    if fresh == 0 or fresh > room:
        return pos, fresh, False
    added = np.empty(fresh, np.uint64)
    at = np.empty(fresh, np.int64)
    k = 0
    for i in range(len(pos)):
        if pos[i] < 0:
            r = size + k
            keys[r] = key[i]
            f[r, :] = nf[i, :]
            ints[r, :] = ni[i, :]
            added[k] = key[i]
            at[k] = r
            k += 1
    if 2 * (size + fresh) <= len(index[0]):
        index_put(index[0], index[1], added, at)
    return pos, fresh, True


@nb.njit(cache=True, nogil=True)
def _hexdigit(c: int) -> bool:  # pragma: no cover - compiled
    return 48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102


_BROADCAST = np.frombuffer(b"255.255.255.255", np.uint8)


@nb.njit(cache=True, nogil=True)
def dest_kinds(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Per string (Arrow ``offsets`` into ``data``): 1 for a multicast address (the windows'
    MULTICAST: ``^(22[4-9]|23[0-9])\\.|^[fF][fF][0-9a-fA-F]{2}:``), 2 for ``255.255.255.255``,
    else 0."""
    out = np.zeros(len(offsets) - 1, np.uint8)
    for r in range(len(out)):
        a, z = offsets[r], offsets[r + 1]
        m = z - a
        if m >= 4 and data[a] == 50 and data[a + 3] == 46:  # "2..."
            c1, c2 = data[a + 1], data[a + 2]
            if (c1 == 50 and 52 <= c2 <= 57) or (c1 == 51 and 48 <= c2 <= 57):  # 22[4-9], 23x
                out[r] = 1
                continue
        if (
            m >= 5
            and (data[a] == 102 or data[a] == 70)
            and (data[a + 1] == 102 or data[a + 1] == 70)
            and _hexdigit(data[a + 2])
            and _hexdigit(data[a + 3])
            and data[a + 4] == 58
        ):
            out[r] = 1
            continue
        if m == len(_BROADCAST):
            same = True
            for j in range(m):
                if data[a + j] != _BROADCAST[j]:
                    same = False
                    break
            if same:
                out[r] = 2
    return out
