"""The one exception type that crosses the backend boundary."""

from __future__ import annotations

from wasinn.enums import ErrorCode


class WasiNnError(Exception):
    """A wasi-nn failure with the error code the guest will receive.

    Backends raise it to choose the code (``raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "expected
    shape [1, 3, 224, 224]")``). Any other exception raised by a backend hook becomes
    ``runtime_error``, with the exception logged on the ``wasinn`` logger.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        # Runtimes' messages can quote a guest's model: never let one carry a newline or a terminal
        # escape into a log line.
        if not message.isprintable():
            from wasinn.guestlog import printable
            message = printable(message)
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


class ConfigurationError(Exception):
    """A mistake by the embedder or CLI user (bad flag, bad model registration), never by a guest."""
