"""What every transport raises, and the interface the endpoint drives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from wasinn import ErrorCode
from wasinn_backend_kserve.protocol import InputTensor, OutputTensor


class TransportError(Exception):
    """A failed call: the wasi-nn code the guest gets, a reason without secrets, and whether trying
    again may help (``retryable``) and is safe even for a call that is not idempotent (``unsent``:
    the server never saw the request, e.g. connection refused)."""

    def __init__(self, code: ErrorCode, message: str, *, retryable: bool = False, unsent: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.unsent = unsent
        self.status = status


class BinaryRefused(TransportError):
    """The server answered a binary-extension request with a client error: it may not support the
    extension (MLServer 1.7 answers HTTP 422), so the endpoint may fall back to JSON."""


class Transport(Protocol):
    kind: str

    def server_ready(self) -> bool: ...

    def model_ready(self, model: str, version: str) -> bool: ...

    def metadata(self, model: str, version: str) -> dict[str, Any]: ...

    def infer(self, model: str, version: str, inputs: Sequence[InputTensor], outputs: Sequence[str], *,
              binary: bool) -> list[OutputTensor]: ...

    def close(self) -> None: ...


def status_error(status: int, what: str, detail: str) -> TransportError:
    """The guest's error for an HTTP status (gRPC codes are mapped to the same meanings)."""
    detail = detail.strip().replace("\n", " ")[:300]
    message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    if 300 <= status < 400:
        # Not followed: the token would go wherever the Location says, and the URI is the host's to set.
        return TransportError(ErrorCode.RUNTIME_ERROR, f"{what}: HTTP {status}: a redirect, not followed (give "
                              "the server's final URI)", status=status)
    if status == 404:
        return TransportError(ErrorCode.NOT_FOUND, message, status=status)
    if status in (400, 422):
        return TransportError(ErrorCode.INVALID_ARGUMENT, message, status=status)
    if status in (401, 403):
        return TransportError(ErrorCode.RUNTIME_ERROR, f"{what}: HTTP {status}: the server refused the credentials",
                              status=status)
    if status == 413:
        return TransportError(ErrorCode.TOO_LARGE, message, status=status)
    if status in (429, 503):
        return TransportError(ErrorCode.BUSY, message, retryable=True, status=status)
    return TransportError(ErrorCode.RUNTIME_ERROR, message, retryable=status in (502, 504), status=status)
