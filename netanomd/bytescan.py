"""What netanomd's byte scanners share (:mod:`netanomd.zeek.flowscan` for Broker's frames,
:mod:`netanomd.sources.evescan` for Suricata's EVE lines): a list of words laid out as one byte
array for a kernel to match against, and an unaligned 8-byte load inside numba kernels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numba.core import types
from numba.extending import intrinsic


def words(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words as one byte array and the offsets of each (word ``k`` is
    ``data[at[k]:at[k + 1]]``), for a kernel to match against."""
    raw = [w.encode() for w in names]
    at = np.zeros(len(raw) + 1, np.int64)
    at[1:] = np.cumsum([len(w) for w in raw])
    return np.frombuffer(b"".join(raw), np.uint8).copy(), at


def _load_word(typingctx: Any, arr: Any, i: Any) -> Any:  # pragma: no cover - compiled
    """The 8 bytes of the uint8 array ``arr`` from ``i`` as a uint64 in the machine's byte
    order (one unaligned load; the caller keeps ``i + 8`` within the array)."""
    sig = types.uint64(arr, types.intp)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        word = context.get_value_type(types.uint64).as_pointer()
        return builder.load(builder.bitcast(builder.gep(array.data, [args[1]]), word), align=1)

    return sig, codegen


#: ``word_at(buf, i)`` in a numba kernel: :func:`_load_word`.
word_at: Any = intrinsic(_load_word)
