"""Release review: each test here failed before the fix it names (see the commit that added it)."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pytest
from kserve_servers import Server
from wasinn_backend_kserve import backend
from wasinn_backend_kserve.config import parse_config
from wasinn_backend_kserve.endpoint import Endpoint
from wasinn_backend_kserve.protocol import (
    InputTensor,
    ModelMeta,
    OutputTensor,
    ProtocolError,
    TensorMeta,
    check_outputs,
)
from wasinn_backend_kserve.rest import RestTransport

import wasinn
from wasinn import ErrorCode, Tensor, WasiNnError
from wasinn.errors import ConfigurationError
from wasinn.remote import make_remote

X = np.ones((1, 4), np.float32)
TOKEN = "review-s3cret-token"


def _infer(transport: RestTransport) -> list[OutputTensor]:
    return transport.infer("affine", "", [InputTensor("x", "FP32", (1, 4), X.tobytes())], ["y"], binary=False)


def test_every_stale_pooled_connection_is_survived_after_a_restart(own_kserve: Server) -> None:
    # Threads on one endpoint leave several kept-alive connections idle in the pool; a server
    # restart (or its keep-alive timeout) closes them all. Before the fix the retry took the next
    # stale connection from the pool and the guest's infer failed with "the connection failed".
    transport = RestTransport(parse_config(make_remote("affine", own_kserve.rest())))
    try:
        deadline = time.monotonic() + 30
        held = [transport._take(deadline)[0] for _ in range(3)]  # three open connections, as three threads would
        for conn in held:
            transport._give_back(conn)
        assert transport.opened == 3
        own_kserve.stop()
        own_kserve.start()
        [y] = _infer(transport)  # a POST: the endpoint does not retry it, the pool must cope
        np.testing.assert_array_equal(np.asarray(y.values, np.float32).reshape(1, 4), np.full((1, 4), 3.0))
        [y] = _infer(transport)  # and the next call needs no stale round trip either
        assert transport.opened <= 5
    finally:
        transport.close()


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[bytes]]]:
    """A raw HTTP/1.1 listener on 127.0.0.1 that records each request head and answers 200, empty."""
    listener = socket.create_server(("127.0.0.1", 0))
    heads: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                heads.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], heads
    listener.close()
    thread.join(timeout=5)


def test_a_uri_path_prefix_cannot_inject_headers(recorder: tuple[int, list[bytes]]) -> None:
    # Before the fix the prefix was sent unquoted: %0D%0A in the URI split the request line.
    port, heads = recorder
    uri = f"http://127.0.0.1:{port}/my%20models%0D%0AX-Injected:%201/v2/models/affine"
    transport = RestTransport(parse_config(make_remote("affine", uri)))
    try:
        assert transport.server_ready()
    finally:
        transport.close()
    [head] = heads
    request_line, *header_lines = head.split(b"\r\n")
    assert request_line == b"GET /my%20models%0D%0AX-Injected%3A%201/v2/health/ready HTTP/1.1"
    assert not any(line.lower().startswith(b"x-injected") for line in header_lines)


@pytest.mark.parametrize("token", ["abc\r\nX-Injected: 1", "abc\ndef", "t\x00k", "tök"])
def test_a_token_that_cannot_be_a_header_is_refused_without_showing_it(token: str) -> None:
    # Before the fix it went into "Authorization: Bearer ..." as it was: a second header.
    remote = make_remote("affine", "http://127.0.0.1:9/v2/models/affine", {"token": token})
    with pytest.raises(ConfigurationError) as caught:
        parse_config(remote)
    assert "token" in str(caught.value)
    assert token not in str(caught.value) and "abc" not in str(caught.value)


META_INT = ModelMeta("m", (), "", (TensorMeta("x", "FP32", (4,)),), (TensorMeta("y", "INT8", (4,)),))
META_U8 = ModelMeta("m", (), "", (TensorMeta("x", "FP32", (4,)),), (TensorMeta("y", "UINT8", (4,)),))
META_F16 = ModelMeta("m", (), "", (TensorMeta("x", "FP32", (4,)),), (TensorMeta("y", "FP16", (4,)),))


@pytest.mark.parametrize(("meta", "values", "words"), [
    (META_INT, [1, 2, 3, 300], "INT8"),  # wrapped to 44 before the fix
    (META_U8, [1, 2, 3, -1], "UINT8"),  # wrapped to 255
    (META_INT, [1, 2, 3, 1.5], "not whole"),  # truncated to 1
    (META_F16, [1, 2, 3, 1e10], "out of range for FP16"),  # became inf
    (META_U8, [True, False, True, True], "not a list of numbers"),
    (META_INT, [1, 2, 3, "4"], "not a list of numbers"),  # numpy parsed the string before the fix
])
def test_json_values_that_do_not_fit_the_datatype_are_refused(meta: ModelMeta, values: list[object],
                                                              words: str) -> None:
    answer = [OutputTensor("y", meta.outputs[0].datatype, (4,), values=values)]
    with pytest.raises(ProtocolError) as caught:
        check_outputs(meta, answer)
    assert words in caught.value.message


def test_json_values_that_fit_are_kept_exactly() -> None:
    [y] = check_outputs(META_INT, [OutputTensor("y", "INT8", (4,), values=[-128, 0, 1, 127])])
    assert y.dtype == np.int8 and y.tolist() == [-128, 0, 1, 127]
    meta = ModelMeta("m", (), "", (), (TensorMeta("y", "FP32", (2,)),))
    [y] = check_outputs(meta, [OutputTensor("y", "FP32", (2,), values=[1, 2.5])])
    assert y.dtype == np.float32 and y.tolist() == [1.0, 2.5]


def test_a_flood_of_interim_answers_is_a_protocol_error_and_the_connection_is_closed() -> None:
    # Before the fix each "100 Continue" recursed once more: RecursionError (not a wasi-nn error)
    # after about a thousand, and the connection stayed open while the error lived.
    listener = socket.create_server(("127.0.0.1", 0))
    closed_by_client: list[bool] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            try:
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * 5000
                             + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                conn.settimeout(30)  # a guard only: the client closes at once
                closed_by_client.append(conn.recv(1) == b"")
            except TimeoutError:
                closed_by_client.append(False)
            except OSError:
                closed_by_client.append(True)  # reset by the client's close: closed too

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}/v2/models/affine"
    transport = RestTransport(parse_config(make_remote("affine", uri)))
    try:
        with pytest.raises(WasiNnError) as caught:
            transport.server_ready()
        assert "interim" in caught.value.message
        thread.join(timeout=60)
        assert closed_by_client == [True]
    finally:
        transport.close()
        listener.close()


class StartingUp(http.server.BaseHTTPRequestHandler):
    """A server that is still starting: /v2/health/ready answers 503 twice, then 200."""

    protocol_version = "HTTP/1.1"
    asked: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        StartingUp.asked.append(self.path)
        status = 503 if self.path == "/v2/health/ready" and StartingUp.asked.count(self.path) <= 2 else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.mark.parametrize(("retries", "ready"), [("2", True), ("1", False)])
def test_readiness_503_is_retried_as_documented(retries: str, ready: bool, caplog: pytest.LogCaptureFixture) -> None:
    # docs/scale-out.md: retries cover HTTP 429/502/503/504, readiness and metadata always. Before the
    # fix a 503 from /v2/health/ready gave busy at once, whatever retries said.
    StartingUp.asked.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StartingUp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{server.server_address[1]}/v2/models/affine"
    endpoint = Endpoint(parse_config(make_remote("affine", uri, {"retries": retries})))
    try:
        if ready:
            endpoint.check_ready()
        else:
            with pytest.raises(WasiNnError) as caught:
                endpoint.check_ready()
            assert caught.value.code is ErrorCode.BUSY and "HTTP 503" in caught.value.message
        assert StartingUp.asked.count("/v2/health/ready") == int(retries) + 1
        assert "server readiness failed (try 1 of" in caplog.text
    finally:
        endpoint.release()
        server.shutdown()
        server.server_close()


def test_the_output_description_cache_keeps_descriptions_never_data() -> None:
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb2
    from wasinn_backend_kserve import wire

    def answer(values: list[float], *, raw: bool) -> bytes:
        message = pb2.ModelInferResponse(model_name="affine")
        out = message.outputs.add(name="y", datatype="FP32", shape=[1, 4])
        if raw:
            message.raw_output_contents.append(np.asarray(values, "<f4").tobytes())
        else:
            out.contents.fp32_contents.extend(values)
        return message.SerializeToString()

    for raw in (True, False, True, False):  # the second of each kind meets a warm cache
        for values in ([1, 2, 3, 4], [5, 6, 7, 8]):
            [y] = wire.decode_infer_response(answer(values, raw=raw))
            assert (y.name, y.datatype, y.shape) == ("y", "FP32", (1, 4))
            got = np.frombuffer(y.raw, "<f4") if raw else np.asarray(y.values)
            assert got.tolist() == values


# -- checked during the review, already right (kept as regression tests) -------------------------

@pytest.mark.parametrize("route", ["rest", "grpc"])
def test_hooks_out_of_order_and_tensors_that_do_not_fit_the_metadata(route: str, ks_server: Server) -> None:
    host = wasinn.WasiNnHost()
    host.register_remote("affine", ks_server.rest() if route == "rest" else ks_server.grpc())
    graph = host.load_named("affine").graph
    try:
        context = backend.init_execution_context(graph)
        with pytest.raises(WasiNnError) as caught:
            backend.compute(context)
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "before set_input" in caught.value.message
        with pytest.raises(WasiNnError) as caught:
            backend.get_output(context, 0)
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "before a successful compute" in caught.value.message
        for bad in (np.ones((1, 4), np.int32), np.ones((4,), np.float32), np.ones((1, 5), np.float32),
                    np.ones((1, 1, 4), np.float32)):
            with pytest.raises(WasiNnError) as caught:
                backend.set_input(context, 0, Tensor.from_numpy(bad))
            assert caught.value.code is ErrorCode.INVALID_ARGUMENT and "f32[?,4]" in caught.value.message
        x = np.arange(8, dtype=np.float32).reshape(2, 4)  # the context still works after all that
        backend.set_input(context, 0, Tensor.from_numpy(x))
        backend.compute(context)
        np.testing.assert_array_equal(backend.get_output(context, 0), 2 * x + 1)
    finally:
        host.close()


def test_grpc_contexts_on_many_threads_share_one_channel(ks_server: Server) -> None:
    host = wasinn.WasiNnHost()
    host.register_remote("affine", ks_server.grpc())
    graph = host.load_named("affine").graph
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            context = backend.init_execution_context(graph)
            for i in range(20):
                x = np.full((3, 4), seed * 100 + i, np.float32)
                backend.set_input(context, 0, Tensor.from_numpy(x))
                backend.compute(context)
                np.testing.assert_array_equal(backend.get_output(context, 0), 2 * x + 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    host.close()
    assert not errors


def test_a_redirect_is_not_followed_and_the_token_goes_nowhere_else(
        recorder: tuple[int, list[bytes]], caplog: pytest.LogCaptureFixture) -> None:
    elsewhere, heads = recorder

    class Redirecting(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = wasinn.WasiNnHost()
    host.register_remote("affine", f"http://127.0.0.1:{server.server_address[1]}/v2/models/affine",
                         options={"token": TOKEN, "retries": "0"})
    try:
        with pytest.raises(WasiNnError) as caught:
            host.load_named("affine")
        # Before the fix: busy, "the server is not ready", which sends the user looking in the wrong place.
        assert caught.value.code is ErrorCode.RUNTIME_ERROR and "redirect, not followed" in caught.value.message
        assert heads == []  # nothing (and no token) went to the Location
        assert TOKEN not in caught.value.message and TOKEN not in caplog.text
    finally:
        host.close()
        server.shutdown()
        server.server_close()
