"""Zeek's ``conn_state`` and ``history`` approximated from Suricata EVE flows, column-wise.

Owns the rules :mod:`netanomd.sources.suricata_eve`'s module doc tables (which TCP flags and
packet counts make which state, which history letters), applied to whole columns in one numba
pass (the GIL released) for both of its decoders.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10

#: conn_state names by code, in the order :func:`conn_states` decides them.
STATES = np.array(["S0", "OTH", "REJ", "RSTR", "RSTO", "SF", "S1"], dtype=object)
#: history letters by bit: originator SYN, responder SYN+ACK, originator ACK, data each way,
#: FIN each way, RST each way.
HISTORY_LETTERS = "ShADdFfRr"
HISTORIES = np.array(
    [
        "".join(c for k, c in enumerate(HISTORY_LETTERS) if code >> k & 1)
        for code in range(1 << len(HISTORY_LETTERS))
    ],
    dtype=object,
)


def state_codes(
    tcp: np.ndarray,
    flags_ts: np.ndarray,
    flags_tc: np.ndarray,
    flags: np.ndarray,
    pkts_ts: np.ndarray,
    pkts_tc: np.ndarray,
    data_ts: np.ndarray,
    data_tc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`conn_states` as indices into :data:`STATES` and :data:`HISTORIES`."""
    states = np.empty(len(tcp), np.int64)
    histories = np.empty(len(tcp), np.int64)
    _state_kernel(
        np.ascontiguousarray(tcp, dtype=np.bool_),
        np.ascontiguousarray(flags_ts, dtype=np.int64),
        np.ascontiguousarray(flags_tc, dtype=np.int64),
        np.ascontiguousarray(flags, dtype=np.int64),
        np.ascontiguousarray(pkts_ts, dtype=np.bool_),
        np.ascontiguousarray(pkts_tc, dtype=np.bool_),
        np.ascontiguousarray(data_ts, dtype=np.bool_),
        np.ascontiguousarray(data_tc, dtype=np.bool_),
        states,
        histories,
    )
    return states, histories


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _state_kernel(
    tcp: np.ndarray,
    flags_ts: np.ndarray,
    flags_tc: np.ndarray,
    flags: np.ndarray,
    pkts_ts: np.ndarray,
    pkts_tc: np.ndarray,
    data_ts: np.ndarray,
    data_tc: np.ndarray,
    states: np.ndarray,
    histories: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Each flow's :data:`STATES` and :data:`HISTORIES` index, by the table of
    :mod:`~netanomd.sources.suricata_eve` (its rows in order: the first that holds decides)."""
    for r in range(tcp.shape[0]):
        if not tcp[r]:
            states[r] = 5 if pkts_tc[r] and pkts_ts[r] else 0
            histories[r] = 0b11000 if pkts_tc[r] else 0b01000
            continue
        ts, tc = flags_ts[r], flags_tc[r]
        if ts == 0 and tc == 0:  # only the combined flags are known
            ts = flags[r]
            tc = flags[r] if pkts_tc[r] else 0
        syn_ts = ts & _SYN != 0
        syn_ack = tc & _SYN != 0 and tc & _ACK != 0
        fin_ts, fin_tc = ts & _FIN != 0, tc & _FIN != 0
        rst_ts, rst_tc = ts & _RST != 0, tc & _RST != 0
        histories[r] = (
            syn_ts
            | syn_ack << 1
            | (ts & _ACK != 0) << 2
            | data_ts[r] << 3
            | data_tc[r] << 4
            | fin_ts << 5
            | fin_tc << 6
            | rst_ts << 7
            | rst_tc << 8
        )
        if not pkts_tc[r]:
            states[r] = 0 if syn_ts else 1
        elif rst_tc and not syn_ack:
            states[r] = 2 if syn_ts else 3
        elif rst_ts:
            states[r] = 4
        elif rst_tc:
            states[r] = 3
        elif fin_ts and fin_tc:
            states[r] = 5
        elif syn_ts and tc & _SYN != 0:
            states[r] = 6
        else:
            states[r] = 1


def conn_states(
    tcp: np.ndarray,
    flags_ts: np.ndarray,
    flags_tc: np.ndarray,
    flags: np.ndarray,
    pkts_ts: np.ndarray,
    pkts_tc: np.ndarray,
    data_ts: np.ndarray,
    data_tc: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate Zeek ``conn_state`` and ``history`` (object arrays of str) from EVE flows
    (see module doc), column-wise: per flow whether it is TCP with a ``tcp`` object, its flag
    integers (each side's, and the combined ones), whether each side sent packets and whether
    it sent payload (more than 40 bytes of IP+TCP header per packet plus Ethernet)."""
    states, histories = state_codes(
        tcp, flags_ts, flags_tc, flags, pkts_ts, pkts_tc, data_ts, data_tc
    )
    return STATES[states], HISTORIES[histories]
