"""Faults: a server that is down, slow, failing, lying, answering too much, or cutting the
connection; each gives the guest the right wasi-nn error within the configured timeout, with a log
line saying why, and the host goes on. The main cases use the real KServe ModelServer; a tiny
misbehaving HTTP server (127.0.0.1) covers answers real servers never send."""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb2
from kserve_servers import EXIT, WITX_F32, Server, free_port
from wasinn_backend_kserve.config import parse_config
from wasinn_backend_kserve.endpoint import transport_for
from wasinn_backend_kserve.grpc import GrpcTransport

from wasinn.remote import make_remote

NnRun = Callable[..., int]
X = np.ones((1, 4), np.float32)


def guest(nn_run: NnRun, tmp_path: Path, uri: str, *options: str, x: np.ndarray = X, dims: str | None = None) -> int:
    x.astype("<f4").tofile(tmp_path / "in.bin")
    flags = ["--nn-remote", f"affine={uri}"]
    for option in options:
        flags += ["--nn-remote-option", f"affine:{option}"]
    return nn_run("--load-by-name", "affine", "--input", "0", WITX_F32, dims or "x".join(map(str, x.shape)),
                  "/d/in.bin", "--output", "0", "/d/out.bin", flags=flags)


def test_server_down(nn_run: NnRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    for uri in (f"http://127.0.0.1:{port}/v2/models/affine", f"grpc://127.0.0.1:{port}/affine"):
        capsys.readouterr()
        assert guest(nn_run, tmp_path, uri, "retries=2", "timeout=2") == EXIT["runtime_error"]
        logged = capsys.readouterr().err
        assert "try 1 of 3, again" in logged  # bounded retries, logged
        assert "try 2 of 3, again" in logged and "try 3 of 3" not in logged  # and no more


@pytest.mark.parametrize("route", ["rest", "grpc"])
def test_slow_model_times_out(route: str, nn_run: NnRun, tmp_path: Path, ks_server: Server,
                              capsys: pytest.CaptureFixture[str]) -> None:
    uri = ks_server.rest("slow") if route == "rest" else ks_server.grpc("slow")
    # timeout 0.5 s < the model's 3 s: the guest gets its error, the host does not wait it out.
    assert guest(nn_run, tmp_path, uri, "timeout=0.5", "retries=0") == EXIT["runtime_error"]
    logged = capsys.readouterr().err
    assert "0.5 s" in logged


@pytest.mark.parametrize("route", ["rest", "grpc"])
@pytest.mark.parametrize(("model", "code", "words"), [
    ("broken", "runtime_error", "500"),
    ("liar", "runtime_error", "shape"),
    ("wrongtype", "runtime_error", "INT64"),
    ("nosuchmodel", "not_found", "nosuchmodel"),
])
def test_real_server_errors(route: str, model: str, code: str, words: str, nn_run: NnRun, tmp_path: Path,
                            ks_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    uri = ks_server.rest(model) if route == "rest" else ks_server.grpc(model)
    assert guest(nn_run, tmp_path, uri, "retries=0") == EXIT[code]
    if route == "rest" or model not in ("broken",):
        logged = capsys.readouterr().err
        assert words in logged


def test_wrong_input_shape_from_the_guest(nn_run: NnRun, tmp_path: Path, ks_server: Server,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    x = np.ones((1, 5), np.float32)
    assert guest(nn_run, tmp_path, ks_server.rest(), x=x) == EXIT["invalid_argument"]
    logged = capsys.readouterr().err
    assert "f32[?,4]" in logged


@pytest.mark.parametrize("route", ["rest", "grpc"])
def test_huge_response_is_bounded(route: str, nn_run: NnRun, tmp_path: Path, ks_server: Server,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    uri = ks_server.rest() if route == "rest" else ks_server.grpc()
    x = np.ones((4096, 4), np.float32)  # a 64 KiB answer, over a 1000-byte limit
    assert guest(nn_run, tmp_path, uri, "max-response-bytes=1000", "retries=0", x=x) == EXIT["too_large"]


def test_binary_transport_forced_on_mlserver_says_why(nn_run: NnRun, tmp_path: Path, ml_server: Server,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # MLServer 1.7 answers a binary request with HTTP 500 (or 422): forced binary fails, saying why.
    assert guest(nn_run, tmp_path, ml_server.rest(), "transport=binary") in (EXIT["runtime_error"],
                                                                              EXIT["invalid_argument"])
    logged = capsys.readouterr().err
    assert "binary tensor extension" in logged


def test_bad_options_are_refused_before_any_request(nn_run: NnRun, tmp_path: Path, ks_server: Server,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert guest(nn_run, tmp_path, ks_server.rest(), "colour=blue") == EXIT["invalid_argument"]
    logged = capsys.readouterr().err
    assert "unknown option" in logged
    assert guest(nn_run, tmp_path, ks_server.rest(), "timeout=soon") == EXIT["invalid_argument"]


# -- a misbehaving server ------------------------------------------------------------------------

META = {"name": "affine", "versions": [], "platform": "", "inputs": [{"name": "x", "datatype": "FP32",
                                                                      "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
TOKEN = "s3cret-token-value"


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Serves readiness and metadata correctly; answers infer according to the model name."""

    protocol_version = "HTTP/1.1"
    seen_auth: ClassVar[list[str | None]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        Misbehaving.seen_auth.append(self.headers.get("Authorization"))
        if "/auth" in self.path and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, b"{}")
        elif self.path.endswith("/ready"):
            self._send(200, b"")
        else:
            self._send(200, json.dumps(META).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        model = self.path.split("/")[3]
        if model == "cut":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # no answer at all
            return
        if model == "garbage":
            self._send(200, b"\x00not json{{{")
            return
        if model == "badlength":
            self._send(200, b'{"outputs": []}', {"Inference-Header-Content-Length": "999999"})
            return
        if model == "overrun":
            header = json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4],
                                              "parameters": {"binary_data_size": 4096}}]}).encode()
            self._send(200, header + b"\x00" * 16, {"Inference-Header-Content-Length": str(len(header))})
            return
        if model == "drip":
            # A valid answer, one byte at a time: each read alone is quick, the whole is not.
            body = json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4],
                                            "data": [3, 3, 3, 3]}]}).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                for byte in body:
                    time.sleep(0.05)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            except OSError:
                pass
            return
        if model == "driphead":
            # A long status line one byte at a time: each socket read alone is quick, the line is not.
            body = json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4],
                                            "data": [3, 3, 3, 3]}]}).encode()
            head = b"HTTP/1.1 200 O" + b"k" * 200 + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
            try:
                for byte in head:
                    time.sleep(0.1)
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                self.wfile.write(body)
            except OSError:
                pass
            self.close_connection = True
            return
        if model == "dripbig":
            # A valid 2 MiB answer (JSON, then spaces) in 64 KiB pieces: about 3 s in all.
            body = json.dumps({"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4],
                                            "data": [3, 3, 3, 3]}]}).encode().ljust(2 << 20)
            try:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                for at in range(0, len(body), 65536):
                    time.sleep(0.1)
                    self.wfile.write(body[at:at + 65536])
                    self.wfile.flush()
            except OSError:
                pass
            return
        if model == "endless":
            # No Content-Length: chunked, and more than any limit.
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"[" * 65536
            try:
                for _ in range(64):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            self.connection.close()
            return
        y = {"outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [3, 3, 3, 3]}]}
        self._send(200, json.dumps(y).encode())


@pytest.fixture
def bad_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("model", "code", "words"), [
    ("cut", "runtime_error", "connection"),
    ("garbage", "runtime_error", "not JSON"),
    ("badlength", "runtime_error", "Inference-Header-Content-Length"),
    ("overrun", "runtime_error", "binary_data_size"),
    ("endless", "too_large", "max-response-bytes"),
])
def test_malformed_answers(model: str, code: str, words: str, bad_server: int, nn_run: NnRun, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{bad_server}/v2/models/{model}"
    assert guest(nn_run, tmp_path, uri, "retries=0", "transport=json", "max-response-bytes=1000000") == EXIT[code]
    logged = capsys.readouterr().err
    assert words in logged


@pytest.mark.parametrize("model", ["drip", "driphead", "dripbig"])
def test_a_dripping_answer_is_bounded_by_the_timeout(model: str, bad_server: int, nn_run: NnRun, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # Each drip takes 3 s (dripbig) to 22 s (driphead); with timeout=1 the guest gets its error instead
    # of the answer. Before the fix a header line was read by one readline and a large body by one
    # readinto, each as many socket reads as the server liked, each read given the time left at its
    # start: dripbig answered (exit 0) after 3 s, driphead failed after 22 s.
    uri = f"http://127.0.0.1:{bad_server}/v2/models/{model}"
    started = time.monotonic()
    assert guest(nn_run, tmp_path, uri, "retries=0", "transport=json", "timeout=1",
                 "max-response-bytes=4000000") == EXIT["runtime_error"]
    assert time.monotonic() - started < 10  # about 1 s here; generous for a busy machine
    assert "no answer within 1 s" in capsys.readouterr().err


def test_bearer_token_from_the_host_never_logged(bad_server: int, nn_run: NnRun, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{bad_server}/v2/models/auth"
    assert guest(nn_run, tmp_path, uri, "retries=0", "transport=json") == EXIT["runtime_error"]
    logged = capsys.readouterr().err
    assert "refused the credentials" in logged
    monkeypatch.setenv("AFFINE_TOKEN", TOKEN)
    assert guest(nn_run, tmp_path, uri, "retries=0", "transport=json", "token-env=AFFINE_TOKEN") == 0
    assert f"Bearer {TOKEN}" in Misbehaving.seen_auth
    assert guest(nn_run, tmp_path, uri, "retries=0", "transport=json", f"token={TOKEN}") == 0
    logged = capsys.readouterr().err
    assert TOKEN not in logged


# -- connecting: connect-timeout on every try ------------------------------------------------------
# Each try's connection phase is bounded by connect-timeout and the whole try by timeout. Read
# through the calls the transport makes on its real gRPC channel: each call's deadline and
# wait_for_ready, and each wait for the channel to connect (grpc.channel_ready_future) with its bound.

@dataclass
class Tries:
    calls: list[tuple[str, float, Any]] = field(default_factory=list)  # (method, timeout, wait_for_ready)
    waits: list[float | None] = field(default_factory=list)  # each wait for a connection: its bound


def watch(monkeypatch: pytest.MonkeyPatch, uri: str, options: dict[str, str]) -> Tries:
    """The shared transport the guest's load will use, with its calls recorded (and still made)."""
    transport = transport_for(parse_config(make_remote("affine", uri, options)))
    assert isinstance(transport, GrpcTransport)
    tries = Tries()
    for name, call in list(transport._calls.items()):
        def record(request: bytes, *, _name: str = name, _call: Any = call, **kwargs: Any) -> Any:
            tries.calls.append((_name, kwargs["timeout"], kwargs.get("wait_for_ready")))
            return _call(request, **kwargs)
        transport._calls[name] = record  # type: ignore[assignment]
    real = grpc.channel_ready_future

    class Recorded:
        def __init__(self, channel: grpc.Channel) -> None:
            self.future = real(channel)

        def result(self, timeout: float | None = None) -> None:
            tries.waits.append(timeout)
            self.future.result(timeout)

        def cancel(self) -> bool:
            return self.future.cancel()

    monkeypatch.setattr(grpc, "channel_ready_future", Recorded)
    return tries


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word (no HTTP/2 SETTINGS)."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("down", ["refused", "black hole"])
def test_grpc_server_down_each_try_waits_connect_timeout_not_timeout(
        down: str, black_hole: int, nn_run: NnRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Before the fix the try after a refused connection waited with wait_for_ready=True for the whole
    # timeout (30.8 s with the defaults), whatever connect-timeout said.
    uri = f"grpc://127.0.0.1:{free_port() if down == 'refused' else black_hole}/affine"
    options = {"timeout": "20", "connect-timeout": "0.3", "retries": "2"}
    tries = watch(monkeypatch, uri, options)
    started = time.monotonic()
    assert guest(nn_run, tmp_path, uri, *(f"{k}={v}" for k, v in options.items())) == EXIT["runtime_error"]
    elapsed = time.monotonic() - started
    logged = capsys.readouterr().err
    # No call waits for the channel, and each lasts timeout at most; each try that waits for the
    # channel to connect waits connect-timeout at most.
    assert tries.calls and all(not wait and timeout <= 20 for _, timeout, wait in tries.calls), tries
    assert tries.waits == [0.3] * (3 - len(tries.calls)), tries
    assert "try 1 of 3, again" in logged and "try 2 of 3, again" in logged
    assert re.search(r"server readiness failed after 3 tries in \d+\.\d\d s", logged)  # the wait, reported
    # The first try (a call on a new channel) ended with gRPC's connection attempt, which
    # connect-timeout bounds too (gRPC's own default is 20 s), not with the call's deadline.
    assert "DEADLINE_EXCEEDED" not in logged
    if down == "black hole":
        assert "SETTINGS" in logged
    assert elapsed < 10  # about 1 s here; before the fix the second try alone took 20 s


@pytest.mark.parametrize("down", ["refused", "black hole"])
def test_rest_server_down_each_try_is_bounded_too(down: str, black_hole: int, nn_run: NnRun, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"http://127.0.0.1:{free_port() if down == 'refused' else black_hole}/v2/models/affine"
    started = time.monotonic()
    assert guest(nn_run, tmp_path, uri, "timeout=0.5", "connect-timeout=0.3", "retries=2") == EXIT["runtime_error"]
    elapsed = time.monotonic() - started
    logged = capsys.readouterr().err
    assert "try 1 of 3, again" in logged and "try 2 of 3, again" in logged
    assert re.search(r"server readiness failed after 3 tries in \d+\.\d\d s", logged)
    # Refused: each try is one connection attempt. A silent HTTP/1.1 server looks like a slow one:
    # each try ends at timeout (connecting included).
    words = "cannot connect" if down == "refused" else "no answer within 0.5 s"
    assert logged.count(words) >= 3
    assert elapsed < 10


def _affine_service() -> grpc.GenericRpcHandler:
    """KServe v2 over gRPC for y = 2x + 1, in this process (messages coded by KServe's classes)."""
    ready = pb2.ServerReadyResponse(ready=True).SerializeToString()
    tensor = pb2.ModelMetadataResponse.TensorMetadata
    meta = pb2.ModelMetadataResponse(name="affine", platform="test",
                                     inputs=[tensor(name="x", datatype="FP32", shape=[-1, 4])],
                                     outputs=[tensor(name="y", datatype="FP32", shape=[-1, 4])]).SerializeToString()

    def infer(request: bytes, context: object) -> bytes:
        message = pb2.ModelInferRequest.FromString(request)
        x = np.frombuffer(message.raw_input_contents[0], "<f4").reshape(tuple(message.inputs[0].shape))
        y = 2 * x + 1
        out = pb2.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=list(y.shape))
        answer: bytes = pb2.ModelInferResponse(model_name="affine", outputs=[out],
                                               raw_output_contents=[y.astype("<f4").tobytes()]).SerializeToString()
        return answer

    handlers = {"ServerReady": lambda request, context: ready, "ModelReady": lambda request, context: ready,
                "ModelMetadata": lambda request, context: meta, "ModelInfer": infer}
    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService", {name: grpc.unary_unary_rpc_method_handler(handler)
                                           for name, handler in handlers.items()})


@contextmanager
def grpc_affine() -> Iterator[Callable[[int], int]]:
    """start(port): a real gRPC server on 127.0.0.1 (port 0: any), bound and serving from then on;
    returns the port. (Bound but not started, it would accept connections and say nothing.)"""
    server = grpc.server(ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((_affine_service(),))

    def start(port: int) -> int:
        port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return port

    try:
        yield start
    finally:
        server.stop(None)


def test_grpc_server_started_after_the_first_try_is_reached_by_the_next(
        nn_run: NnRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    uri = f"grpc://127.0.0.1:{port}/affine"
    options = {"connect-timeout": "10", "retries": "2"}  # generous: the wait ends when it connects
    tries = watch(monkeypatch, uri, options)
    with grpc_affine() as start:

        class StartOnFirstFailure(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "try 1 of 3, again" in record.getMessage():
                    start(port)  # the server comes up between the first try and the second

        handler = StartOnFirstFailure()
        logging.getLogger("wasinn.kserve").addHandler(handler)
        try:
            assert guest(nn_run, tmp_path, uri, *(f"{k}={v}" for k, v in options.items())) == 0
        finally:
            logging.getLogger("wasinn.kserve").removeHandler(handler)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.bin", "<f4").reshape(1, 4), 2 * X + 1)
    logged = capsys.readouterr().err
    assert "try 1 of 3, again" in logged and "try 2 of 3" not in logged
    assert [name for name, _, _ in tries.calls][:2] == ["ServerReady", "ServerReady"]
    assert all(not wait for _, _, wait in tries.calls), tries
    assert tries.waits == [10.0], tries  # the second try waited for the channel, bounded by connect-timeout


@contextmanager
def slow_to_speak(upstream: int, delay: float) -> Iterator[int]:
    """A port on 127.0.0.1 that forwards to ``upstream`` after ``delay`` s: a server whose
    connection takes that long (a TLS handshake across the world, a busy load balancer)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()

    def handle(client: socket.socket) -> None:
        time.sleep(delay)
        try:
            server = socket.create_connection(("127.0.0.1", upstream))
        except OSError:  # the test is over
            client.close()
            return
        threading.Thread(target=pipe, args=(server, client), daemon=True).start()
        pipe(client, server)

    def accept() -> None:
        while True:
            try:
                client = listener.accept()[0]
            except OSError:
                return
            threading.Thread(target=handle, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_grpc_connection_slower_than_a_tenth_of_a_second_is_given_connect_timeout(
        nn_run: NnRun, tmp_path: Path) -> None:
    # Before the fix every gRPC connection attempt was cut after about 0.1 s (min_reconnect_backoff_ms,
    # which is gRPC's connect deadline), whatever connect-timeout said: a server 0.5 s away failed.
    with grpc_affine() as start, slow_to_speak(start(0), 0.5) as front:
        assert guest(nn_run, tmp_path, f"grpc://127.0.0.1:{front}/affine", "retries=0", "connect-timeout=5") == 0
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.bin", "<f4").reshape(1, 4), 2 * X + 1)
