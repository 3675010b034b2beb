"""REST transport: JSON, and the binary tensor extension (``Inference-Header-Content-Length``), over
kept-alive ``http.client`` connections (no dependency beyond the standard library).

Connections are pooled per endpoint: a call takes an idle connection (or opens one), gives it back
after reading the whole answer, and drops it on any error. Every read is bounded: by the socket
timeout per operation, by a deadline for the whole answer, and by ``max-response-bytes``.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np

from wasinn import ErrorCode
from wasinn_backend_kserve.config import EndpointConfig
from wasinn_backend_kserve.protocol import DATATYPES, InputTensor, OutputTensor, ProtocolError
from wasinn_backend_kserve.transport import BinaryRefused, TransportError, status_error

HEADER_LENGTH = "Inference-Header-Content-Length"
_CHUNK = 1 << 20


class RestTransport:
    kind = "rest"

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self._idle: queue.LifoQueue[http.client.HTTPConnection] = queue.LifoQueue(maxsize=config.pool_size)
        self._ssl: ssl.SSLContext | None = None
        if config.tls:
            self._ssl = ssl.create_default_context(cafile=config.tls_ca)
            if config.tls_cert and config.tls_key:
                self._ssl.load_cert_chain(config.tls_cert, config.tls_key)
        self._headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self.opened = 0  # connections opened so far (the tests check reuse with it)

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        cfg = self.config
        conn: http.client.HTTPConnection
        if self._ssl is not None:
            conn = http.client.HTTPSConnection(cfg.host, cfg.port, timeout=cfg.connect_timeout, context=self._ssl)
        else:
            conn = http.client.HTTPConnection(cfg.host, cfg.port, timeout=cfg.connect_timeout)
        try:
            conn.connect()
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise TransportError(ErrorCode.RUNTIME_ERROR, f"cannot connect to {cfg.shown}: {_why(exc)}",
                                 retryable=True, unsent=True) from None
        assert conn.sock is not None
        conn.sock.settimeout(cfg.timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return conn

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            return self._connect(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- one exchange --------------------------------------------------------------------------
    def request(self, method: str, path: str, body: Sequence[bytes | bytearray | memoryview] = (),
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        url = self.config.prefix + path
        all_headers = {**self._headers, **(headers or {})}
        if body or method == "POST":
            all_headers["Content-Length"] = str(sum(len(part) for part in body))
        for attempt in (0, 1):
            conn, reused = self._take()
            try:
                # Small bodies as one bytes (headers and body leave in one packet); large ones as
                # parts, so that a tensor is not copied into a joined body first.
                payload: object = None
                if body:
                    payload = b"".join(body) if sum(len(p) for p in body) < 65536 else list(body)
                conn.request(method, url, body=payload, headers=all_headers)  # type: ignore[arg-type]
                response = conn.getresponse()
                data = self._read(response)
            except TimeoutError:
                conn.close()
                raise TransportError(ErrorCode.RUNTIME_ERROR, f"{method} {self.config.shown}: no answer within "
                                     f"{self.config.timeout:g} s (option timeout)", retryable=True) from None
            except TransportError:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise TransportError(ErrorCode.RUNTIME_ERROR, f"{method} {self.config.shown}: the connection "
                                     f"failed: {_why(exc)}", retryable=True) from None
            if response.will_close:
                conn.close()
            else:
                self._give_back(conn)
            return response.status, response, data
        raise AssertionError("unreachable")

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        limit = self.config.max_response_bytes
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise TransportError(ErrorCode.TOO_LARGE, f"{self.config.shown}: the answer is {int(length)} bytes, "
                                 f"over max-response-bytes={limit}")
        deadline = time.monotonic() + self.config.timeout
        if length is not None and length.isdigit():
            # One read into a buffer of the announced size (a 64 MB tensor is not copied chunk by chunk).
            buffer = bytearray(int(length))
            view, got = memoryview(buffer), 0
            while got < len(buffer):
                n = response.readinto(view[got:got + 16 * _CHUNK])
                if not n:
                    raise http.client.IncompleteRead(bytes(view[:got]), len(buffer) - got)
                got += n
                if time.monotonic() > deadline:
                    raise TimeoutError
            return buffer  # type: ignore[return-value]  # bytes-like: json and numpy read it as is
        parts: list[bytes] = []
        total = 0
        while True:
            chunk = response.read1(_CHUNK) if hasattr(response, "read1") else response.read(_CHUNK)
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > limit:
                raise TransportError(ErrorCode.TOO_LARGE, f"{self.config.shown}: the answer passed "
                                     f"max-response-bytes={limit}")
            if time.monotonic() > deadline:
                raise TimeoutError
            parts.append(chunk)

    def _json(self, path: str, what: str) -> Any:
        status, _, data = self.request("GET", path)
        if status != 200:
            raise status_error(status, f"{what} {self.config.shown}", data.decode(errors="replace"))
        try:
            return json.loads(data)
        except ValueError:
            raise ProtocolError(f"{what} {self.config.shown}: the answer is not JSON") from None

    # -- the protocol --------------------------------------------------------------------------
    @staticmethod
    def _model_path(model: str, version: str) -> str:
        path = f"/v2/models/{quote(model, safe='')}"
        return f"{path}/versions/{quote(version, safe='')}" if version else path

    def _ready(self, path: str, what: str) -> bool:
        status, _, data = self.request("GET", path)
        if status in (401, 403, 404):  # not a matter of waiting: say why now
            raise status_error(status, what, data.decode(errors="replace"))
        return status == 200

    def server_ready(self) -> bool:
        return self._ready("/v2/health/ready", f"server readiness {self.config.shown}")

    def model_ready(self, model: str, version: str) -> bool:
        return self._ready(self._model_path(model, version) + "/ready", f"model {model!r} at {self.config.shown}")

    def metadata(self, model: str, version: str) -> dict[str, Any]:
        data = self._json(self._model_path(model, version), "model metadata")
        if not isinstance(data, dict):
            raise ProtocolError(f"model metadata {self.config.shown}: not a JSON object")
        return data

    def infer(self, model: str, version: str, inputs: Sequence[InputTensor], outputs: Sequence[str], *,
              binary: bool) -> list[OutputTensor]:
        path = self._model_path(model, version) + "/infer"
        body: list[bytes | bytearray | memoryview]
        headers = {"Content-Type": "application/json"}
        if binary:
            header = json.dumps({
                "inputs": [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype,
                            "parameters": {"binary_data_size": t.nbytes}} for t in inputs],
                "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
                "parameters": {"binary_data_output": True},
            }).encode()
            body = [header, *(t.data for t in inputs)]
            headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
        else:
            body = [json.dumps({
                "inputs": [{"name": t.name, "shape": list(t.shape), "datatype": t.datatype,
                            "data": np.frombuffer(t.data, dtype=DATATYPES[t.datatype].numpy_dtype).tolist()}
                           for t in inputs],
                "outputs": [{"name": name} for name in outputs],
            }).encode()]
        status, response, data = self.request("POST", path, body, headers)
        if status != 200:
            error = status_error(status, f"infer {self.config.shown}", data.decode(errors="replace")[:300])
            # MLServer 1.7 answers a binary request with 422 or 500: the endpoint decides whether
            # that means "no binary extension" (JSON then works) or a real failure.
            if binary and status in (400, 415, 422, 500):
                raise BinaryRefused(error.code, error.message, status=status)
            raise error
        return parse_answer(data, response.getheader(HEADER_LENGTH), self.config.shown)


def parse_answer(data: bytes, header_length: str | None, shown: str) -> list[OutputTensor]:
    """An infer answer, JSON or binary (JSON header, then each binary output's bytes in order)."""
    view = memoryview(data)
    json_end = len(view)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(view):
            raise ProtocolError(f"infer {shown}: bad {HEADER_LENGTH} {header_length[:20]!r}")
        json_end = int(header_length)
    try:
        answer = json.loads(bytes(view[:json_end]))
    except ValueError:
        raise ProtocolError(f"infer {shown}: the answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("outputs"), list):
        raise ProtocolError(f"infer {shown}: the answer has no outputs list")
    results: list[OutputTensor] = []
    offset = json_end
    for item in answer["outputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("shape"), list) or not isinstance(item.get("datatype"), str):
            raise ProtocolError(f"infer {shown}: an output lacks name, shape or datatype")
        try:
            shape = tuple(int(d) for d in item["shape"])
        except (TypeError, ValueError):
            raise ProtocolError(f"infer {shown}: output {item['name']!r} has a non-integer shape") from None
        size = (item.get("parameters") or {}).get("binary_data_size") if isinstance(item.get("parameters"),
                                                                                   dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(view):
                raise ProtocolError(f"infer {shown}: output {item['name']!r}: binary_data_size {size!r} runs past "
                                    "the answer")
            results.append(OutputTensor(item["name"], item["datatype"], shape, raw=view[offset:offset + size]))
            offset += size
        else:
            if "data" not in item:
                raise ProtocolError(f"infer {shown}: output {item['name']!r} has no data")
            results.append(OutputTensor(item["name"], item["datatype"], shape, values=item["data"]))
    return results


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
