"""gRPC transport (the ``[grpc]`` extra: grpcio only; messages coded by :mod:`.wire`).

One channel per endpoint: a gRPC channel multiplexes concurrent calls over one HTTP/2 connection and
reconnects by itself, so it is the pool, shared by every graph, context and thread. The default
4 MiB message limit would refuse a 16 MB tensor: both directions are raised to the endpoint's
``max-response-bytes``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from wasinn import ErrorCode
from wasinn_backend_kserve import wire
from wasinn_backend_kserve.config import EndpointConfig
from wasinn_backend_kserve.protocol import InputTensor, OutputTensor
from wasinn_backend_kserve.transport import TransportError

_CODES: dict[Any, tuple[ErrorCode, bool]] = {
    grpc.StatusCode.UNAVAILABLE: (ErrorCode.RUNTIME_ERROR, True),
    grpc.StatusCode.DEADLINE_EXCEEDED: (ErrorCode.RUNTIME_ERROR, True),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (ErrorCode.TOO_LARGE, False),
    grpc.StatusCode.INVALID_ARGUMENT: (ErrorCode.INVALID_ARGUMENT, False),
    grpc.StatusCode.OUT_OF_RANGE: (ErrorCode.INVALID_ARGUMENT, False),
    grpc.StatusCode.NOT_FOUND: (ErrorCode.NOT_FOUND, False),
    grpc.StatusCode.UNAUTHENTICATED: (ErrorCode.RUNTIME_ERROR, False),
    grpc.StatusCode.PERMISSION_DENIED: (ErrorCode.RUNTIME_ERROR, False),
}


class GrpcTransport:
    kind = "grpc"

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        limit = min(config.max_response_bytes, 2**31 - 1)
        options = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", limit),
                   ("grpc.enable_retries", 0),  # retries are ours: bounded, and logged
                   # How long one connection attempt (TCP, TLS, the server's first HTTP/2 SETTINGS) may
                   # take: gRPC names it the minimum reconnect backoff; it is the attempt's deadline.
                   ("grpc.min_reconnect_backoff_ms", max(100, round(config.connect_timeout * 1000))),
                   # Reconnect soon after a server restarts (gRPC's default backoff grows to 120 s).
                   ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
        target = f"{config.host}:{config.port}"
        if config.tls:
            def read(path: str | None) -> bytes | None:
                return Path(path).read_bytes() if path else None
            credentials = grpc.ssl_channel_credentials(read(config.tls_ca), read(config.tls_key), read(config.tls_cert))
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self._recovering = False
        self._last_error = ""
        self._metadata = (("authorization", f"Bearer {config.token}"),) if config.token else None
        self._calls = {name: self.channel.unary_unary(wire.SERVICE + name)  # bytes in, bytes out
                       for name in ("ServerReady", "ModelReady", "ModelMetadata", "ModelInfer")}

    def _call(self, name: str, request: bytes, what: str) -> bytes:
        # Fail fast (no wait_for_ready): gRPC then waits only for a connection attempt under way, which
        # min_reconnect_backoff_ms bounds by connect-timeout, and the whole try is bounded by timeout.
        timeout = self.config.timeout
        if self._recovering:
            timeout -= self._await_connection(what)
        try:
            answer: bytes = self._calls[name](request, timeout=max(timeout, 0.001), metadata=self._metadata,
                                              wait_for_ready=False)
            self._recovering = False
            return answer
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = (exc.details() if hasattr(exc, "details") else "") or ""
            mapped, retryable = _CODES.get(code, (ErrorCode.RUNTIME_ERROR, False))
            self._recovering = code is grpc.StatusCode.UNAVAILABLE
            if code is grpc.StatusCode.UNAVAILABLE:
                self._last_error = detail[:300]
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                detail = f"no answer within {self.config.timeout:g} s (option timeout)"
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                detail = "the server refused the credentials"
            name_ = code.name if code is not None else "?"
            raise TransportError(mapped, f"{what} {self.config.shown}: gRPC {name_}: {detail[:300]}",
                                 retryable=retryable, unsent=code is grpc.StatusCode.UNAVAILABLE) from None

    def _await_connection(self, what: str) -> float:
        """After a failed connection the channel backs off before it tries again, and a fail-fast
        call in between fails at once without trying: wait for it to connect (a restarted server is
        then reached by this try), but no longer than connect-timeout. Returns the seconds waited."""
        started = time.monotonic()
        ready = grpc.channel_ready_future(self.channel)
        try:
            ready.result(timeout=self.config.connect_timeout)
        except grpc.FutureTimeoutError:
            ready.cancel()  # unsubscribes from the channel's state
            raise TransportError(ErrorCode.RUNTIME_ERROR, f"{what} {self.config.shown}: gRPC: cannot connect within "
                                 f"{self.config.connect_timeout:g} s (option connect-timeout); last error: "
                                 f"{self._last_error}", retryable=True, unsent=True) from None
        return time.monotonic() - started

    def server_ready(self) -> bool:
        return wire.decode_ready(self._call("ServerReady", b"", "server ready"))

    def model_ready(self, model: str, version: str) -> bool:
        return wire.decode_ready(self._call("ModelReady", wire.encode_model_request(model, version), "model ready"))

    def metadata(self, model: str, version: str) -> dict[str, Any]:
        return wire.decode_metadata(self._call("ModelMetadata", wire.encode_model_request(model, version),
                                               "model metadata"))

    def infer(self, model: str, version: str, inputs: Sequence[InputTensor], outputs: Sequence[str], *,
              binary: bool) -> list[OutputTensor]:
        return self.infer_message(wire.encode_infer_request(model, version, inputs, outputs))

    def infer_message(self, message: bytes) -> list[OutputTensor]:
        return wire.decode_infer_response(self._call("ModelInfer", message, "infer"))

    def close(self) -> None:
        self.channel.close()
