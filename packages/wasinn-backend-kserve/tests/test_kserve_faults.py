"""Faults: a server that is down, slow, failing, lying, answering too much, or cutting the
connection; each gives the guest the right wasi-nn error within the configured timeout, with a log
line saying why, and the host goes on. The main cases use the real KServe ModelServer; a tiny
misbehaving HTTP server (127.0.0.1) covers answers real servers never send."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from kserve_servers import EXIT, WITX_F32, Server, free_port

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


def test_a_dripping_answer_is_bounded_by_the_timeout(bad_server: int, nn_run: NnRun, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # The drip takes about 5 s in all; with timeout=1 the guest gets its error instead of the answer.
    uri = f"http://127.0.0.1:{bad_server}/v2/models/drip"
    assert guest(nn_run, tmp_path, uri, "retries=0", "transport=json", "timeout=1") == EXIT["runtime_error"]
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
