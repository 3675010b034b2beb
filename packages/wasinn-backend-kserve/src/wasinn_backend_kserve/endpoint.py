"""One server endpoint: its transport (pooled, shared), readiness, metadata, retries, and the choice
of the fastest transport it supports.

Endpoints with the same address, credentials and limits share one transport (one REST connection
pool, or one gRPC channel) across every graph, context and thread of the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from wasinn import ErrorCode, WasiNnError
from wasinn_backend_kserve.config import EndpointConfig
from wasinn_backend_kserve.protocol import InputTensor, ModelMeta, OutputTensor, parse_metadata
from wasinn_backend_kserve.transport import BinaryRefused, Transport, TransportError

log = logging.getLogger("wasinn.kserve")
T = TypeVar("T")

_shared: dict[tuple[object, ...], Transport] = {}
_shared_lock = threading.RLock()
#: Servers (scheme, host, port, prefix) known to refuse, or to accept, the REST binary extension.
_no_binary: set[tuple[object, ...]] = set()
_binary_ok: set[tuple[object, ...]] = set()


def transport_for(config: EndpointConfig) -> Transport:
    with _shared_lock:  # re-entrant: acquire() holds it too
        transport = _shared.get(config.key)
        if transport is None:
            if config.grpc:
                from wasinn_backend_kserve.grpc import GrpcTransport
                transport = GrpcTransport(config)
            else:
                from wasinn_backend_kserve.rest import RestTransport
                transport = RestTransport(config)
            _shared[config.key] = transport
        return transport


_users: dict[tuple[object, ...], int] = {}


def acquire(config: EndpointConfig) -> Transport:
    """The shared transport for ``config``, counted: each loaded graph holds one use."""
    with _shared_lock:
        transport = transport_for(config)
        _users[config.key] = _users.get(config.key, 0) + 1
        return transport


def release(config: EndpointConfig) -> None:
    """One use fewer; the last one closes the connections (the host closed, the graph unloaded)."""
    with _shared_lock:
        left = _users.get(config.key, 0) - 1
        if left > 0:
            _users[config.key] = left
            return
        _users.pop(config.key, None)
        transport = _shared.pop(config.key, None)
    if transport is not None:
        transport.close()


def close_all() -> None:
    """Close every shared transport (tests; a long-lived embedder that re-points its models)."""
    with _shared_lock:
        for transport in _shared.values():
            transport.close()
        _shared.clear()
        _users.clear()
        _no_binary.clear()
        _binary_ok.clear()


class Endpoint:
    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self.transport = acquire(config)
        self._server = (config.scheme, config.host, config.port, config.prefix)
        side = config.grpc_side()
        #: Where inference goes: gRPC for a grpc:// URI, or an http(s) one with grpc-port; else REST.
        self.infer_config = side or config
        self.infer_transport = acquire(side) if side is not None else self.transport
        self._released = False

    def release(self) -> None:
        """Give back this endpoint's uses of the shared transports (once)."""
        if self._released:
            return
        self._released = True
        release(self.config)
        if self.infer_config is not self.config:
            release(self.infer_config)

    @property
    def grpc_infer(self) -> bool:
        return self.infer_config.grpc

    @property
    def rest_mode(self) -> str:
        """binary or json: what the next REST infer uses."""
        if self.config.transport in ("binary", "json"):
            return self.config.transport
        return "json" if self._server in _no_binary else "binary"

    @staticmethod
    def describe_static(config: EndpointConfig) -> str:
        if config.grpc:
            return "gRPC"
        if config.grpc_side() is not None:
            return f"gRPC (port {config.grpc_port}) for inference, REST for readiness and metadata"
        return {"auto": "REST (binary tensors where the server has the extension, else JSON for small ones)",
                "binary": "REST with the binary tensor extension", "json": "REST with JSON"}[config.transport]

    def _retry(self, what: str, call: Callable[[], T], *, idempotent: bool) -> T:
        attempts = self.config.retries + 1
        started = time.monotonic()
        for attempt in range(attempts):
            try:
                return call()
            except BinaryRefused:
                raise  # the caller falls back to JSON
            except TransportError as exc:
                again = exc.retryable and (idempotent or exc.unsent) and attempt + 1 < attempts
                if again:
                    log.warning("remote %s: %s failed (try %d of %d, again): %s", self.config.name, what,
                                attempt + 1, attempts, exc.message)
                    time.sleep(min(0.1 * 2 ** attempt, 2.0))
                    continue
                # How long the guest waited, and over how many tries: each is bounded by the options.
                spent = f"{attempt + 1} {'try' if attempt == 0 else 'tries'} in {time.monotonic() - started:.2f} s"
                log.warning("remote %s: %s failed after %s: %s", self.config.name, what, spent, exc.message)
                raise WasiNnError(exc.code, f"{exc.message} ({spent})") from None
        raise AssertionError("unreachable")

    def check_ready(self) -> None:
        cfg = self.config
        if not self._retry("server readiness", self.transport.server_ready, idempotent=True):
            raise WasiNnError(ErrorCode.BUSY, f"{cfg.shown}: the server is not ready (/v2/health/ready)")
        if not self._retry("model readiness", lambda: self.transport.model_ready(cfg.model, cfg.version),
                           idempotent=True):
            raise WasiNnError(ErrorCode.BUSY, f"{cfg.shown}: model {cfg.model!r} is not ready")

    def metadata(self) -> ModelMeta:
        cfg = self.config
        data = self._retry("model metadata", lambda: self.transport.metadata(cfg.model, cfg.version),
                           idempotent=True)
        return parse_metadata(data)

    def infer_message(self, message: bytes) -> list[OutputTensor]:
        """gRPC: send a ``ModelInferRequest`` already encoded (by ``set_input``)."""
        from wasinn_backend_kserve.grpc import GrpcTransport
        transport = self.infer_transport
        assert isinstance(transport, GrpcTransport)
        return self._retry("infer", lambda: transport.infer_message(message), idempotent=False)

    def infer(self, inputs: Sequence[InputTensor], outputs: Sequence[str]) -> list[OutputTensor]:
        cfg = self.config
        if self.grpc_infer:
            transport = self.infer_transport
            return self._retry("infer", lambda: transport.infer(cfg.model, cfg.version, inputs, outputs,
                                                                binary=True), idempotent=False)
        refused: BinaryRefused | None = None
        if self.rest_mode == "binary":
            try:
                answer = self._retry("infer", lambda: self.transport.infer(cfg.model, cfg.version, inputs, outputs,
                                                                           binary=True), idempotent=False)
                _binary_ok.add(self._server)
                return answer
            except BinaryRefused as exc:
                if cfg.transport == "binary" or self._server in _binary_ok:
                    hint = " (transport=binary: the server may not have the binary tensor extension)" \
                        if self._server not in _binary_ok else ""
                    log.warning("remote %s: infer failed: %s%s", cfg.name, exc.message, hint)
                    raise WasiNnError(exc.code, exc.message + hint) from None
                refused = exc
        largest = max((t.nbytes for t in inputs), default=0)
        if largest > cfg.json_max_bytes:
            message = (f"{cfg.shown}: a {largest}-byte tensor would travel as JSON (over json-max-bytes="
                       f"{cfg.json_max_bytes}); " + ("this server refused the REST binary extension (HTTP "
                                                     f"{refused.status}): use its gRPC port (grpc://)" if refused
                                                     else "transport=json"))
            log.warning("remote %s: %s", cfg.name, message)
            raise WasiNnError(ErrorCode.TOO_LARGE, message)
        answer = self._retry("infer", lambda: self.transport.infer(cfg.model, cfg.version, inputs, outputs,
                                                                   binary=False), idempotent=False)
        if refused is not None:
            # JSON works where binary did not: the server lacks the extension.
            log.info("remote %s: %s refused the binary tensor extension (HTTP %s): JSON from now on", cfg.name,
                     cfg.shown, refused.status)
            _no_binary.add(self._server)
        return answer
