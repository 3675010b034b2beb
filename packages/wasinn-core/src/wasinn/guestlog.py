"""Log lines a guest causes: escaped, and rate-limited per store.

A guest decides how often its calls fail, and a runtime's message can carry text from the guest's
model (an ONNX op type with a newline in it). So every line a guest's failure writes goes through
:class:`GuestLog`: control characters are escaped (a guest cannot forge a second log line or send
terminal escapes), and each store may write a burst of lines, then a steady trickle; what is dropped
is counted and reported on the next line that gets through.
"""

from __future__ import annotations

import logging
import threading
import time

#: Lines a store may log at once, then lines per second after that.
BURST = 20
RATE = 2.0

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x1b``, ``\\u2028``).

    Costs one ``isprintable`` call for the usual, clean message.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class GuestLog:
    """A token bucket of log lines for one store (thread-safe; a store may run on several threads)."""

    def __init__(self, burst: int = BURST, rate: float = RATE) -> None:
        self.burst = burst
        self.rate = rate
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self.dropped = 0
        self._lock = threading.Lock()

    def log(self, logger: logging.Logger, level: int, message: str) -> bool:
        """Write ``message`` (escaped) unless this store is over its rate; True if written."""
        if not logger.isEnabledFor(level):
            return False
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1.0:
                self.dropped += 1
                return False
            self._tokens -= 1.0
            dropped, self.dropped = self.dropped, 0
        suffix = f" [{dropped} more line(s) from this guest were dropped: rate limit]" if dropped else ""
        logger.log(level, "%s%s", printable(message), suffix)
        return True
