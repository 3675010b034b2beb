"""The wire between the host and its template and worker processes.

One ``AF_UNIX`` ``SOCK_SEQPACKET`` socket pair per process: message boundaries are kept and file
descriptors (``SCM_RIGHTS``) travel with the message they belong to.

The two directions are not alike, on purpose:

* host -> worker (and template): :mod:`pickle` of plain tuples. The host is the trusted side; the
  worker trusts it anyway. Larger payloads (a model's bytes, tensors) never go in a message: they
  sit in sealed ``memfd`` files whose descriptors the message carries.
* worker -> host: JSON of lists, numbers and strings, and never a file descriptor. A worker that a
  hostile model took over controls what it sends; JSON cannot run code in the host (pickle could),
  and every value is checked by the host before use (:func:`checked_array` for tensors).
"""

from __future__ import annotations

import array
import json
import mmap
import os
import pickle
import select
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Largest control message either side reads (a model's tensor specs, an error message).
MAX_MESSAGE = 1 << 17
#: Longest error text a worker may return (the host escapes it as every guest-caused text).
MAX_TEXT = 2000
#: A host message larger than this goes in a memfd (pickled), with a small header in the socket.
INLINE = 1 << 15

# Replies (worker -> host): [kind, ...]
OK = 0          # [0, payload, held bytes]
ERROR = 1       # [1, ErrorCode name, message]: the backend raised WasiNnError
EXCEPTION = 2   # [2, exception type name, message]: any other exception (runtime_error)
NEED = 3        # [3, nbytes]: the output does not fit the output buffer: send a bigger one
LOG = 4         # [4, [[level, logger name, text], ...], dropped]: log records, before the reply
#: Log records a worker relays per call (the rest are counted as dropped).
MAX_LOG_RECORDS = 20

#: How long each side polls for the other's next message before it sleeps in the kernel, at least
#: and at most. A wake-up through the scheduler costs 15-70 µs on a VM (a socket round trip with both
#: sides asleep: about 60 µs median on the 2-core test machine); with both sides polling, about 7 µs.
#: Each side polls for about twice the wait it saw last (a short call, a guest's quick next call),
#: within these bounds, and not at all after a wait longer than the maximum: an idle worker or a long
#: ``compute`` costs no polling.
SPIN_S = 200e-6
MAX_SPIN_S = 2e-3
#: Outputs a worker copies into the output buffer right after ``compute`` (so that ``get_output``
#: needs no round trip), in all at most this many bytes.
EAGER_BYTES = 1 << 20
#: Offsets of tensors packed in a shared buffer are multiples of this (numpy and SIMD alignment).
ALIGN = 64

#: The numpy dtypes a worker may describe an output with (``dtype.str``); nothing with objects.
DTYPES = frozenset(np.dtype(t).str for t in ("?", "u1", "i1", "<u2", "<i2", "<f2", "<u4", "<i4", "<f4",
                                              "<u8", "<i8", "<f8"))


def pair() -> tuple[socket.socket, socket.socket]:
    """A socket pair for one host <-> process channel (both ends close-on-exec)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: object, fds: Sequence[int] = ()) -> None:
    """Host side: pickle ``message``; one that does not fit inline travels in a memfd."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > INLINE:
        fd = sealed_memfd("wasinn-message", len(data))
        try:
            os.pwrite(fd, data, 0)
            sock.sendmsg([b"M" + len(data).to_bytes(8, "little")],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [*fds, fd]))])
        finally:
            os.close(fd)
        return
    if fds:
        sock.sendmsg([b"P" + data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        sock.sendall(b"P" + data)


def recv_host_message(sock: socket.socket, max_fds: int = 4) -> tuple[Any, list[int]]:
    """Worker/template side: the next message from the host and the descriptors it carried.
    Raises :class:`EOFError` when the host has gone."""
    data, fds = _recvmsg(sock, max_fds + 1)
    if not data:
        for fd in fds:
            os.close(fd)
        raise EOFError
    if data[:1] == b"M":
        size = int.from_bytes(data[1:9], "little")
        fd = fds.pop()
        try:
            data = b"P" + os.pread(fd, size, 0)
        finally:
            os.close(fd)
    return pickle.loads(data[1:]), fds


#: One receive buffer per thread, reused: ``recvmsg(MAX_MESSAGE)`` allocates a fresh 128 KiB object for
#: every message (15 against 4 µs per small message in a loop of its own on the 2-vCPU VM; within a
#: whole call to a worker the difference was below the run-to-run noise of about 5 µs).
_buffers = threading.local()


def _recvmsg(sock: socket.socket, max_fds: int) -> tuple[bytes, list[int]]:
    view = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(MAX_MESSAGE))
    size, ancdata, flags, _ = sock.recvmsg_into([view], socket.CMSG_SPACE(max_fds * 4))
    data = bytes(view[:size])
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            ints = array.array("i")
            ints.frombytes(payload[: len(payload) - len(payload) % ints.itemsize])
            fds.extend(ints)
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        for fd in fds:
            os.close(fd)
        raise ValueError("message too long")
    return data, fds


def align(offset: int) -> int:
    return (offset + ALIGN - 1) & ~(ALIGN - 1)


class Poller:
    """Polls one socket for a message before its caller blocks on it, for about twice as long as the
    last wait (see :data:`SPIN_S`)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)

    def window(self, last_wait: float) -> float:
        """How long to poll after a wait of ``last_wait`` seconds last time."""
        return 0.0 if last_wait > MAX_SPIN_S else min(MAX_SPIN_S, max(SPIN_S, 2 * last_wait))

    def wait(self, expected: float, deadline: float | None) -> bool:
        """Wait for a reply expected in about ``expected`` seconds (what the last such call took),
        within ``deadline``: poll first for a short call; sleep at once for a long one. (Polling
        towards the end of a long call was tried: on two cores it takes CPU from the runtime's own
        threads, and Gemma-3-270M's tokens came 7-13% slower.) True when the socket is readable."""
        if expected <= MAX_SPIN_S and self.spin(self.window(expected)):
            return True
        return bool(select.select([self._sock], [], [], deadline)[0])

    def spin(self, seconds: float) -> bool:
        """True as soon as the socket is readable (or closed); False after ``seconds``."""
        if seconds <= 0:
            return False
        poll, clock, pause = self._poll.poll, time.perf_counter, os.sched_yield
        end = clock() + seconds
        while not poll(0):
            if clock() >= end:
                return False
            pause()  # on a busy machine the other side may need this very CPU to answer
        return True


#: Made once: ``json.dumps`` with options builds a new encoder for every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def reply(sock: socket.socket, message: list[Any]) -> None:
    """Worker side: a JSON reply (no descriptors: the host never takes one from a worker)."""
    data = _ENCODER.encode(message).encode()
    if len(data) > MAX_MESSAGE:
        data = _ENCODER.encode([EXCEPTION, "ValueError", f"reply of {len(data)} bytes is too long"]).encode()
    sock.sendall(data)


def recv_reply(sock: socket.socket) -> list[Any]:
    """Host side: a worker's JSON reply. Descriptors are refused (closed); a malformed reply raises
    :class:`ValueError`; :class:`EOFError` when the worker has gone."""
    data, fds = _recvmsg(sock, 1)
    for fd in fds:  # never accept a file descriptor from a worker
        os.close(fd)
    if fds:
        raise ValueError("the worker sent a file descriptor")
    if not data:
        raise EOFError
    value = json.loads(data)
    if not isinstance(value, list) or not value or not isinstance(value[0], int):
        raise ValueError("malformed reply")
    return value


def sealed_memfd(name: str, size: int) -> int:
    """A memfd of ``size`` bytes that can neither grow nor shrink: a mapping of it never faults
    (SIGBUS) because the other side truncated it."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        import fcntl
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


def model_file(parts: Sequence[bytes | bytearray | memoryview]) -> int:
    """A read-only descriptor of a file holding ``parts`` one after the other: a guest's model for its
    worker, which reads it (``pread``) or maps it by its ``/proc/self/fd`` path (llama.cpp, whisper.cpp).

    The file is an unnamed one (``O_TMPFILE``) in the temporary directory: it never has a name, so
    nothing is left behind whatever happens to either process, and it is gone when the last
    descriptor closes. It is a real file rather than a memfd because a runtime that maps its weights
    reads them faster from one: Gemma-3-270M's tokens came 5-12% slower from a memfd (4 KiB shmem
    pages; ``shmem_enabled`` is ``never`` by default) than from a freshly written ext4 file, which is
    what the in-process path maps. Where no such file can be made (no ``O_TMPFILE``, a read-only or
    full file system) a sealed memfd holds the bytes instead. The worker gets a read-only descriptor
    of its own, so it can neither change nor truncate the file."""
    size = sum(len(p) for p in parts)
    try:
        fd = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            _write_all(fd, parts)
            return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            pass  # ENOSPC, EFBIG, no /proc: the memfd below
        finally:
            os.close(fd)
    fd = sealed_memfd("wasinn-model", max(size, 1))
    try:
        _write_all(fd, parts)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, parts: Sequence[bytes | bytearray | memoryview]) -> None:
    offset = 0
    for part in parts:
        view = memoryview(part).cast("B")
        while view:
            written = os.pwrite(fd, view, offset)
            offset += written
            view = view[written:]


def map_fd(fd: int, size: int, *, write: bool) -> mmap.mmap:
    """A shared mapping of a memfd (``size`` > 0)."""
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED,
                     prot=mmap.PROT_READ | (mmap.PROT_WRITE if write else 0))


def text(value: object) -> str:
    """A worker's text, bounded (the core escapes it where it reaches a log or a guest)."""
    return str(value)[:MAX_TEXT]


def checked_array(buffer: mmap.mmap | memoryview, dtype: object, shape: object) -> np.ndarray:
    """The host's view of an output a worker wrote at the start of ``buffer``, described by the
    worker's ``dtype`` and ``shape``: both are checked (a known dtype, non-negative integer
    dimensions, within the buffer) before numpy sees them."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"unknown dtype {text(dtype)!r}")
    if not isinstance(shape, list) or len(shape) > 32 or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 1 << 48 for d in shape):
        raise ValueError("malformed shape")
    kind = np.dtype(dtype)
    count = 1
    for d in shape:
        count *= d
    if count * kind.itemsize > len(buffer):
        raise ValueError("output larger than its buffer")
    return np.frombuffer(buffer, dtype=kind, count=count).reshape(shape)
