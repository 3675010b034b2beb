"""One classifier for a failure inside a host call, whichever ABI reports it.

A :class:`~wasinn.errors.WasiNnError` is the guest's failure: its code and message go back to the
guest, and a line goes to the store's rate-limited :class:`~wasinn.guestlog.GuestLog`. Any other
exception is a bug in wasinn: logged here once, with its traceback, and reported to the guest as
``runtime_error``. The two encoders: a core module's import returns an errno
(:func:`wasinn.abi.ephemeral.host_function`), a component's function an ``error`` resource
(:func:`wasinn.component.interface.fallible`).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError


class Failure(NamedTuple):
    """A host call's failure, as the guest is told about it."""

    code: ErrorCode
    message: str
    #: A bug in wasinn (already logged with its traceback), not the guest's doing: no guest-log line.
    internal: bool


def classify(operation: str, exc: Exception, logger: logging.Logger) -> Failure:
    """The failure ``exc`` is for the guest; an exception that is no WasiNnError is logged here."""
    if isinstance(exc, WasiNnError):
        return Failure(exc.code, exc.message, False)
    logger.error("%s: internal error in wasinn: %s: %s", operation, type(exc).__name__, exc, exc_info=exc)
    return Failure(ErrorCode.RUNTIME_ERROR, f"internal error in wasinn: {type(exc).__name__}: {exc}", True)
