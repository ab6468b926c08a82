"""Every datagram waiting on a socket, many per system call.

Owns :class:`DatagramReader`: Linux's ``recvmmsg`` (non-blocking, through ctypes with the GIL
held: the call never waits) into :data:`SLOTS` reused slots of :data:`SLOT_BYTES` each, so a
wake-up that finds ten records makes one system call instead of eleven ``recv`` calls, and the
GIL is not released and re-taken around each (with the scoring thread on the same core, every
release is a hand-over). Where libc has no ``recvmmsg`` (not Linux), one ``recv_into`` per
datagram. A datagram longer than a slot is cut at the slot's end, as one ``recv_into`` into a
buffer of that size cuts it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import socket
from typing import Any

#: Datagrams read per call.
SLOTS = 64
#: The longest datagram read whole (Suricata writes one record per datagram; the kernel refuses
#: datagrams beyond the sender's buffer, 208 KiB by default).
SLOT_BYTES = 1 << 20
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
    fn.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(_Mmsghdr),
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _recvmmsg()


class DatagramReader:
    """Reads the datagrams waiting on a non-blocking datagram socket (module doc)."""

    def __init__(self, sock: socket.socket, *, slots: int = SLOTS, size: int = SLOT_BYTES) -> None:
        self._sock = sock
        self._size = size
        self._fd = sock.fileno()
        # Anonymous memory: pages are only committed where datagrams were written.
        self._memory = mmap.mmap(-1, slots * size)
        self._view = memoryview(self._memory)
        self._recvmmsg = _RECVMMSG
        if self._recvmmsg is None:
            self._slots = 1
            return
        self._slots = slots
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._memory))
        self._iovecs = (_Iovec * slots)(*[_Iovec(base + k * size, size) for k in range(slots)])
        self._msgs = (_Mmsghdr * slots)()
        for k in range(slots):
            self._msgs[k].msg_hdr.msg_iov = ctypes.pointer(self._iovecs[k])
            self._msgs[k].msg_hdr.msg_iovlen = 1

    @property
    def slots(self) -> int:
        """The most datagrams one :meth:`read` returns: fewer means none were left waiting."""
        return self._slots

    def read(self) -> list[bytes]:
        """The datagrams waiting, oldest first (at most :attr:`slots`; none when none wait).
        Raises :class:`OSError` for errors other than "nothing waiting"."""
        if self._recvmmsg is None:
            try:
                n = self._sock.recv_into(self._view[: self._size])
            except BlockingIOError:
                return []
            return [self._memory[:n]]
        got = self._recvmmsg(self._fd, self._msgs, self._slots, _MSG_DONTWAIT, None)
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return []
            raise OSError(err, os.strerror(err))
        memory, size, msgs = self._memory, self._size, self._msgs
        return [memory[k * size : k * size + msgs[k].msg_len] for k in range(got)]

    def close(self) -> None:
        """Frees the slots (the socket stays open)."""
        if self._recvmmsg is not None:
            del self._iovecs, self._msgs
        self._view.release()
        with contextlib.suppress(BufferError):  # a ctypes view still holds it: freed later
            self._memory.close()
