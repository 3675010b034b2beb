"""Host side of a probe: a backend's script run on a model in a confined process forked from a template.

This is how :class:`wasinn.isolation.ChildProbe` runs (the in-process policy's crash guard for models
a runtime may abort on): the same template, fork, confinement and wire as a graph's worker, with a
probe template that has the runtime's modules imported once (no interpreter start per probe), the
model's bytes as an unnamed read-only file on the script's stdin, and only the paths the probe names
readable (and its scratch folders writable). What the script does cannot reach the host: not its
crash, not its allocations (the worker's memory cap), not its files or sockets.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wasinn.sandbox import Confinement
from wasinn.worker import protocol
from wasinn.worker.proxy import probe_template

__all__ = ["ProbeResult", "ProbeTimeout", "run_probe"]


class ProbeTimeout(Exception):
    """The probe did not finish in time (it was killed)."""


@dataclass(frozen=True)
class ProbeResult:
    #: The exit status, or minus the signal that ended the process (as ``subprocess`` reports it).
    returncode: int
    #: The last line the script wrote to its ``sys.stderr`` (bounded; the host escapes it).
    detail: str


def run_probe(script: str, args: Sequence[str], stdin: bytes | None, *, memory_bytes: int, timeout_s: float,
              read: Sequence[str] = (), writable: Sequence[str] = (), preload: Sequence[str] = ()) -> ProbeResult:
    """Run ``script`` (Python source; ``sys.argv[1:]`` is ``args``, ``sys.stdin`` reads ``stdin``) in a
    process forked from the probe template with ``preload`` imported, confined to ``memory_bytes`` on
    top of that import, reading only the runtime's files and ``read``, writing only in ``writable``.
    Raises :class:`ProbeTimeout` past ``timeout_s``, ``WasiNnError`` or ``OSError`` when no process
    could be started."""
    made = probe_template(tuple(preload))
    pid, sock = made.fork()
    pidfd = -1
    fds: list[int] = []
    try:
        pidfd = os.pidfd_open(pid)  # signals reach this process even after its pid is reaped and reused
        if stdin is not None:
            fds.append(protocol.model_file([stdin]))
        spec = Confinement(memory_bytes=made.baseline + memory_bytes, files=True, syscalls=True, privileges=True,
                           strict=False)
        protocol.send(sock, ("probe", script, list(args), list(read), list(writable), spec, stdin is not None),
                      fds)
        answer, late = _answer(sock, time.monotonic() + timeout_s)
        if late:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            made.reap(pid)
            raise ProbeTimeout
    except BaseException:
        if pidfd >= 0:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
        raise
    finally:
        for fd in fds:
            os.close(fd)
        if pidfd >= 0:
            os.close(pidfd)
        sock.close()
    status = made.reap(pid)  # the process exits after its one probe: this waits for that
    exited_cleanly = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    if exited_cleanly and answer is not None and answer[0] == protocol.OK and len(answer) == 3 and \
            type(answer[1]) is int:
        return ProbeResult(answer[1], protocol.text(answer[2]))
    if status is not None and os.WIFSIGNALED(status):
        return ProbeResult(-os.WTERMSIG(status), "")
    if status is not None and os.WIFEXITED(status):  # it ended without a word (os._exit in the script)
        return ProbeResult(os.WEXITSTATUS(status), "")
    return ProbeResult(1, "the probe process ended in an unknown way")


def _answer(sock: socket.socket, deadline: float) -> tuple[list[Any] | None, bool]:
    """The probe's reply (``None`` when the process ended, or sent nonsense, without one), and whether
    ``deadline`` passed first. Log records a probe relays are dropped (its stderr goes nowhere either)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, True
        if not select.select([sock], [], [], remaining)[0]:
            continue
        try:
            answer = protocol.recv_reply(sock)
        except (EOFError, ConnectionError, ValueError):
            return None, False
        if answer[0] != protocol.LOG:
            return answer, False
