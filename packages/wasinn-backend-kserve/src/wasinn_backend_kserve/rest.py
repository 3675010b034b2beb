"""REST transport: JSON, and the binary tensor extension (``Inference-Header-Content-Length``), over
kept-alive HTTP/1.1 connections (standard library only).

The HTTP client is a small one of our own rather than ``http.client``: the protocol needs only
requests with a known length and answers with a length or chunks, and ``http.client`` spends about
50 µs per call parsing headers through the ``email`` package, which is most of what a guest's tiny
inference costs on top of the round trip.

Connections are pooled per endpoint: a call takes an idle connection (or opens one), gives it back
after reading the whole answer, and drops it on any error. Every try is bounded: connecting (TCP and
TLS) by ``connect-timeout``, and the whole try, connecting included, by ``timeout`` (each blocking
send or read of the socket gets what is left of it, so a server that drips its answer cannot
stretch it); answers by ``max-response-bytes``.
"""

from __future__ import annotations

import io
import json
import queue
import socket
import ssl
import time
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import quote

import numpy as np

from wasinn import ErrorCode
from wasinn_backend_kserve.config import EndpointConfig
from wasinn_backend_kserve.protocol import DATATYPES, InputTensor, OutputTensor, ProtocolError
from wasinn_backend_kserve.transport import BinaryRefused, TransportError, status_error

HEADER_LENGTH = "Inference-Header-Content-Length"
_CHUNK = 1 << 20
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_INTERIM = 10  # 1xx answers before the real one (a server looping on them is broken)


class _Closed(Exception):
    """The server closed the connection before (or while) answering."""


class _Connection:
    __slots__ = ("deadline", "reader", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = cast(io.BufferedReader, sock.makefile("rb", buffering=65536))
        self.deadline = 0.0

    def arm(self) -> None:
        """Before each blocking read: what is left of the request's time, so that a server that
        drips its answer byte by byte cannot stretch one request past ``timeout``."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


class Response:
    __slots__ = ("headers", "status")

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status = status
        self.headers = headers

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class RestTransport:
    kind = "rest"

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        self._idle: queue.LifoQueue[_Connection] = queue.LifoQueue(maxsize=config.pool_size)
        self._ssl: ssl.SSLContext | None = None
        if config.tls:
            self._ssl = ssl.create_default_context(cafile=config.tls_ca)
            if config.tls_cert and config.tls_key:
                self._ssl.load_cert_chain(config.tls_cert, config.tls_key)
        host = f"[{config.host}]" if ":" in config.host else config.host
        self._fixed_headers = f"Host: {host}:{config.port}\r\n" + (
            f"Authorization: Bearer {config.token}\r\n" if config.token else "")
        self.opened = 0  # connections opened so far (the tests check reuse with it)

    # -- connections ---------------------------------------------------------------------------
    def _connect(self, deadline: float) -> _Connection:
        cfg = self.config
        until = min(time.monotonic() + cfg.connect_timeout, deadline)  # TCP and TLS together
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=max(until - time.monotonic(), 0.001))
            if self._ssl is not None:
                left = until - time.monotonic()
                if left <= 0:
                    sock.close()
                    raise TimeoutError("timed out")
                sock.settimeout(left)  # the handshake as a whole (Python bounds it, not each read)
                sock = self._ssl.wrap_socket(sock, server_hostname=cfg.host)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(ErrorCode.RUNTIME_ERROR, f"cannot connect to {cfg.shown}: {_why(exc)}",
                                 retryable=True, unsent=True) from None
        sock.settimeout(cfg.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return _Connection(sock)

    def _take(self, deadline: float) -> tuple[_Connection, bool]:
        try:
            return self._idle.get_nowait(), True
        except queue.Empty:
            return self._connect(deadline), False

    def _give_back(self, conn: _Connection) -> None:
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
                headers: dict[str, str] | None = None) -> tuple[int, Response, bytes]:
        length = sum(len(part) for part in body)
        head = (f"{method} {self.config.prefix}{path} HTTP/1.1\r\n{self._fixed_headers}"
                + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
                + (f"Content-Length: {length}\r\n" if body or method == "POST" else "")
                + "\r\n").encode("latin-1")
        deadline = time.monotonic() + self.config.timeout  # the whole try, connecting included
        for attempt in (0, 1):
            # The second try always opens a new connection: when the server closed one kept-alive
            # connection (a restart, its keep-alive timeout), it closed the other idle ones too.
            conn, reused = self._take(deadline) if attempt == 0 else (self._connect(deadline), False)
            conn.deadline = deadline
            try:
                conn.arm()
                if length < 65536:
                    conn.sock.sendall(b"".join([head, *body]))  # one packet for small requests
                else:
                    conn.sock.sendall(head)
                    for part in body:  # a tensor is sent from where it is, not joined first
                        conn.arm()  # sendall's timeout is for one call: give it what is left
                        conn.sock.sendall(part)
                response, data, keep = self._read(conn)
            except TimeoutError:
                conn.close()
                raise TransportError(ErrorCode.RUNTIME_ERROR, f"{method} {self.config.shown}: no answer within "
                                     f"{self.config.timeout:g} s (option timeout)", retryable=True) from None
            except (TransportError, ProtocolError):
                conn.close()  # not left open for as long as the error (and its traceback) lives
                raise
            except (OSError, _Closed, ValueError) as exc:
                conn.close()
                if reused and attempt == 0:
                    self.close()  # the rest of the idle pool is as stale: drop it, not one per call
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise TransportError(ErrorCode.RUNTIME_ERROR, f"{method} {self.config.shown}: the connection "
                                     f"failed: {_why(exc)}", retryable=True) from None
            if keep:
                self._give_back(conn)
            else:
                conn.close()
            return response.status, response, data
        raise AssertionError("unreachable")

    def _line(self, conn: _Connection) -> bytes:
        conn.arm()
        buffered = conn.reader.peek(1)  # at most one read of the socket (the buffer is <= _MAX_LINE)
        if b"\n" in buffered:
            line = conn.reader.readline(_MAX_LINE + 1)  # the usual case: from the buffer alone
        else:
            # readline would read the socket as often as it takes, each read with the timeout left
            # at the start: a server dripping a header line would stretch the try without end.
            parts = [conn.reader.read(min(len(buffered), _MAX_LINE + 1))]
            size = len(parts[0])
            while buffered and size <= _MAX_LINE and not parts[-1].endswith(b"\n"):
                conn.arm()
                buffered = conn.reader.peek(1)
                end = buffered.find(b"\n") + 1 or len(buffered)
                parts.append(conn.reader.read(min(end, _MAX_LINE + 1 - size)))
                size += len(parts[-1])
            line = b"".join(parts)
        if not line:
            raise _Closed("the server closed the connection")
        if len(line) > _MAX_LINE or not line.endswith(b"\n"):
            raise ProtocolError(f"{self.config.shown}: an HTTP header line is too long or cut")
        return line

    def _read(self, conn: _Connection) -> tuple[Response, bytes, bool]:
        """Status line, headers, body; and whether the connection may be kept."""
        for _ in range(_MAX_INTERIM + 1):
            parts, status, fields = self._head(conn)
            if not 100 <= status < 200:
                break  # 100 Continue and friends come before the real answer
        else:
            raise ProtocolError(f"{self.config.shown}: over {_MAX_INTERIM} interim (1xx) answers")
        return self._body(conn, parts, status, fields)

    def _head(self, conn: _Connection) -> tuple[list[bytes], int, dict[str, str]]:
        status_line = self._line(conn)
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"{self.config.shown}: not an HTTP answer ({status_line[:40]!r})")
        status = int(parts[1])
        fields: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self._line(conn)
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"{self.config.shown}: a malformed HTTP header line")
            fields[name.strip().lower()] = value.strip()
        else:
            raise ProtocolError(f"{self.config.shown}: over {_MAX_HEADERS} HTTP header lines")
        return parts, status, fields

    def _body(self, conn: _Connection, parts: list[bytes], status: int,
              fields: dict[str, str]) -> tuple[Response, bytes, bool]:
        response = Response(status, fields)
        keep = parts[0] == b"HTTP/1.1" and fields.get("connection", "").lower() != "close"
        limit = self.config.max_response_bytes
        length = fields.get("content-length")
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return response, self._chunked(conn, limit), keep
        if length is None:
            return response, self._until_close(conn, limit), False
        if not length.isdigit():
            raise ProtocolError(f"{self.config.shown}: bad Content-Length {length[:20]!r}")
        size = int(length)
        if size > limit:
            raise TransportError(ErrorCode.TOO_LARGE, f"{self.config.shown}: the answer is {size} bytes, "
                                 f"over max-response-bytes={limit}")
        if size < _CHUNK:
            conn.arm()
            data = conn.reader.read1(size)
            while len(data) < size:  # more than one read: re-armed each time
                conn.arm()
                more = conn.reader.read1(size - len(data))
                if not more:
                    raise _Closed("the answer was cut short")
                data += more
            return response, data, keep
        # Large: one buffer of the announced size (a 64 MB tensor is not copied chunk by chunk).
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        while got < size:
            conn.arm()
            n = conn.reader.readinto1(view[got:got + 16 * _CHUNK])  # one socket read per arm()
            if not n:
                raise _Closed("the answer was cut short")
            got += n
        return response, buffer, keep  # type: ignore[return-value]  # bytes-like: json and numpy read it

    def _over(self, limit: int) -> TransportError:
        return TransportError(ErrorCode.TOO_LARGE, f"{self.config.shown}: the answer passed "
                                                   f"max-response-bytes={limit}")

    def _chunked(self, conn: _Connection, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line(conn).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"{self.config.shown}: a malformed chunk size") from None
            if size == 0:
                while self._line(conn) not in (b"\r\n", b"\n"):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > limit:
                raise self._over(limit)
            chunk = b""
            while len(chunk) < size:
                conn.arm()
                more = conn.reader.read1(size - len(chunk))
                if not more:
                    raise _Closed("the answer was cut short")
                chunk += more
            self._line(conn)
            parts.append(chunk)

    def _until_close(self, conn: _Connection, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            conn.arm()
            chunk = conn.reader.read1(_CHUNK)
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > limit:
                raise self._over(limit)
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
        if status in (401, 403, 404) or 300 <= status < 400:  # not a matter of waiting: say why now
            raise status_error(status, what, data.decode(errors="replace"))
        if status in (429, 502, 503, 504):
            # Starting up or overloaded: busy, and retried like any idempotent call (docs: retries).
            error = status_error(status, what, data.decode(errors="replace"))
            raise TransportError(ErrorCode.BUSY, error.message, retryable=True, status=status)
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
