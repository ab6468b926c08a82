"""Every datagram waiting on a socket, many per system call, kept where the kernel wrote them.

Owns :class:`DatagramReader`: Linux's ``recvmmsg`` (non-blocking, through ctypes with the GIL
held: the call never waits) straight into the next free of ``slots`` slots of ``size`` bytes
each, so a wake-up that finds ten records makes one system call instead of eleven ``recv``
calls, the GIL is not released and re-taken around each (with the scoring thread on the same
core, every release is a hand-over), and no Python object is made per datagram: the datagrams
stay in their slots until :meth:`DatagramReader.take` hands them all on as one
:class:`~netanomd.sources.evescan.Block` of lines (a datagram is a line; a line end at its end is
left out, and a ``\\r`` before that), read where they lie. The slots are one ``memfd`` mapped
twice: written by the kernel through one mapping, read through the other, read-only one (the
scanner's kernels see the read-only buffer they see for any text). Pages are only committed
where datagrams were written.

Where libc has no ``recvmmsg`` (not Linux), one ``recv_into`` per datagram into the same slots,
handed on as a copy. A datagram longer than a slot is cut at the slot's end, as one
``recv_into`` into a buffer of that size cuts it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import socket
from typing import Any, cast

import numba as nb
import numpy as np

from netanomd.sources.evescan import Block, block_of_text

#: The most datagrams held before they must be taken (a batch).
SLOTS = 1000
#: The longest datagram read whole. Suricata writes one record per datagram; the kernel refuses
#: datagrams beyond the sender's buffer (``net.core.wmem_default``, 208 KiB by default).
SLOT_BYTES = 256 << 10
_MSG_DONTWAIT = 0x40


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _recvmmsg() -> Any:
    """libc's ``recvmmsg``, called with the GIL held, or None where there is none."""
    try:
        fn = ctypes.PyDLL(None, use_errno=True).recvmmsg
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _recvmmsg()


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _line_ends(chars: np.ndarray, starts: np.ndarray, lens: np.ndarray, ends: np.ndarray) -> bool:
    """Each datagram's line end into ``ends`` (a ``\\n`` at its end left out, and a ``\\r``
    before that); False when one holds a line end before that (several lines)."""
    for k in range(len(starts)):
        s = starts[k]
        e = s + lens[k]
        if e > s and chars[e - 1] == 10:
            e -= 1
        if e > s and chars[e - 1] == 13:
            e -= 1
        cuts = 0
        for i in range(s, e):
            cuts += chars[i] == 10
        if cuts:
            return False
        ends[k] = e
    return True


class DatagramReader:
    """Reads the datagrams waiting on a non-blocking datagram socket into its slots, until
    they are taken (module doc)."""

    def __init__(self, sock: socket.socket, *, slots: int = SLOTS, size: int = SLOT_BYTES) -> None:
        self._sock = sock
        self._size = size
        self._slots = slots
        self._fd = sock.fileno()
        #: Datagrams held.
        self._held = 0
        self._recvmmsg = _RECVMMSG if hasattr(os, "memfd_create") else None
        #: Each slot's datagram's length.
        self._lens: np.ndarray
        if self._recvmmsg is None:
            self._memory = mmap.mmap(-1, slots * size)
            self._text = self._memory
            self._lens = np.zeros(slots, np.uint32)
            return
        fd = os.memfd_create("netanomd-datagrams")
        try:
            os.ftruncate(fd, slots * size)
            self._memory = mmap.mmap(fd, slots * size)
            self._text = mmap.mmap(fd, slots * size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._memory))
        self._iovecs = (_Iovec * slots)(*[_Iovec(base + k * size, size) for k in range(slots)])
        self._msgs = (_Mmsghdr * slots)()
        for k in range(slots):
            self._msgs[k].msg_hdr.msg_iov = ctypes.pointer(self._iovecs[k])
            self._msgs[k].msg_hdr.msg_iovlen = 1
        self._msgs_at = ctypes.addressof(self._msgs)
        step = ctypes.sizeof(_Mmsghdr)
        words = np.frombuffer(memoryview(self._msgs).cast("B"), np.uint32).reshape(slots, step // 4)
        self._lens = words[:, _Mmsghdr.msg_len.offset // 4]

    @property
    def free(self) -> int:
        """Slots left: a :meth:`read` that fills them all may have left datagrams waiting."""
        return self._slots - self._held

    def __len__(self) -> int:
        """Datagrams held."""
        return self._held

    def read(self) -> int:
        """Reads the datagrams waiting, oldest first, into the free slots; how many (0 when
        none wait, or none are free). Raises :class:`OSError` for errors other than "nothing
        waiting"."""
        held, free = self._held, self._slots - self._held
        if not free:
            return 0
        if self._recvmmsg is None:  # one recv_into per datagram, until none wait
            view, got = memoryview(self._memory), 0
            while got < free:
                at = (held + got) * self._size
                try:
                    self._lens[held + got] = self._sock.recv_into(view[at : at + self._size])
                except BlockingIOError:
                    break
                got += 1
            view.release()
            self._held += got
            return got
        got = self._recvmmsg(
            self._fd, self._msgs_at + held * ctypes.sizeof(_Mmsghdr), free, _MSG_DONTWAIT, None
        )
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        self._held += got
        return cast(int, got)

    def datagram(self, k: int) -> bytes:
        """The ``k``-th datagram held."""
        at = k * self._size
        return self._text[at : at + int(self._lens[k])]

    def take(self) -> Block:
        """The datagrams held, a line each (module doc), as one block; their slots are free
        again. The block is read where the datagrams lie: decode it before the next
        :meth:`read`. A datagram holding several lines is cut into them (the lines then a
        copy, as where there is no ``recvmmsg``)."""
        n, self._held = self._held, 0
        lens = self._lens[:n].astype(np.int64)
        starts = np.arange(n, dtype=np.int64) * self._size
        if self._text is not self._memory:
            ends = np.empty(n, np.int64)
            if _line_ends(np.frombuffer(self._text, np.uint8), starts, lens, ends):
                return Block(self._text, starts, ends)
        # Several lines in a datagram, or no read-only view of the slots: the lines as text.
        chunks = []
        for k in range(n):
            data = self.datagram(k)
            chunks.append(data if data.endswith(b"\n") else data + b"\n")
        return block_of_text(b"".join(chunks))

    def close(self) -> None:
        """Frees the slots (the socket stays open)."""
        if self._recvmmsg is not None:
            del self._iovecs, self._msgs, self._lens
        for memory in {id(m): m for m in (self._memory, self._text)}.values():
            with contextlib.suppress(BufferError):  # a view still holds it: freed later
                memory.close()
