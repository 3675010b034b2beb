"""One classifier for a failure inside a host call, whichever ABI reports it.

A :class:`~wasinn.errors.WasiNnError` is the guest's failure: its code and message go back to the
guest, and a line goes to the store's rate-limited :class:`~wasinn.guestlog.GuestLog`. Any other
exception is a bug in wasinn: logged here once, with its traceback, and reported to the guest as
``runtime_error`` (an :class:`InternalError`, which the encoders do not log again). The two encoders:
a core module's import returns an errno (:func:`wasinn.abi.ephemeral.errno_for`), a component's
function an ``error`` resource (:func:`wasinn.component.interface.error_resource`).
"""

from __future__ import annotations

import logging

from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError


class InternalError(WasiNnError):
    """What the guest is told about a bug in wasinn (``runtime_error``); logged when it was made."""


def classify(operation: str, exc: Exception, logger: logging.Logger) -> WasiNnError:
    """The failure ``exc`` is for the guest: itself if it is a WasiNnError, else an
    :class:`InternalError`, after logging ``exc`` with its traceback on ``logger``."""
    if isinstance(exc, WasiNnError):
        return exc
    logger.error("%s: internal error in wasinn: %s: %s", operation, type(exc).__name__, exc, exc_info=exc)
    return InternalError(ErrorCode.RUNTIME_ERROR, f"internal error in wasinn: {type(exc).__name__}: {exc}")
