"""End to end: the unchanged nn-run guest calls load_by_name("affine"); the host maps the name to the
local ONNX file, or to MLServer or KServe's ModelServer over REST and gRPC (real servers on
127.0.0.1). Every run must give the same bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kserve_servers import EXIT, WITX_F32, Server

from wasinn.cli.main import main

NnRun = Callable[..., int]
ROUTES = ("local", "mlserver-rest", "mlserver-grpc", "kserve-rest", "kserve-grpc")


def flags_for(route: str, affine_file: Path, ml: Server, ks: Server) -> list[str]:
    if route == "local":
        return ["--nn-graph", f"affine={affine_file}"]
    server = ml if route.startswith("mlserver") else ks
    return ["--nn-remote", f"affine={server.rest() if route.endswith('rest') else server.grpc()}"]


def run_affine(nn_run: NnRun, tmp_path: Path, x: np.ndarray, flags: list[str], *extra: str) -> tuple[int, np.ndarray]:
    x.astype("<f4").tofile(tmp_path / "in.bin")
    out = tmp_path / "out.bin"
    out.unlink(missing_ok=True)
    dims = "x".join(str(d) for d in x.shape)
    status = nn_run("--load-by-name", "affine", "--input", "0", WITX_F32, dims, "/d/in.bin",
                    "--output", "0", "/d/out.bin", str(x.nbytes + 16), *extra, flags=flags)
    got = np.fromfile(out, dtype="<f4") if out.exists() else np.zeros(0, np.float32)
    return status, got


def test_servers_listen_on_loopback_only(ml_server: Server, ks_server: Server) -> None:
    for server in (ml_server, ks_server):
        addresses = server.listening()
        assert addresses, f"{server.kind} listens nowhere?"
        for address in addresses:
            host = address.rsplit(":", 1)[0]
            assert host in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"), f"{server.kind} listens on {address}"


@pytest.mark.parametrize("shape", [(1, 4), (1000, 4)])
def test_the_same_guest_gives_equal_results_locally_and_on_every_server(
        shape: tuple[int, int], nn_run: NnRun, tmp_path: Path, affine_file: Path, ml_server: Server,
        ks_server: Server) -> None:
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    results = {}
    for route in ROUTES:
        status, got = run_affine(nn_run, tmp_path, x, flags_for(route, affine_file, ml_server, ks_server))
        assert status == 0, route
        results[route] = got
    expected = (2 * x + 1).reshape(-1)
    for route, got in results.items():
        np.testing.assert_array_equal(got, results["local"], err_msg=route)
    np.testing.assert_allclose(results["local"], expected, rtol=1e-6)


def test_repeats_and_contexts_reuse_the_graph(nn_run: NnRun, tmp_path: Path, ks_server: Server) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for uri in (ks_server.rest(), ks_server.grpc()):
        status, got = run_affine(nn_run, tmp_path, x, ["--nn-remote", f"affine={uri}"], "--repeat", "5",
                                 "--contexts", "3")
        assert status == 0
        np.testing.assert_array_equal(got, (2 * x + 1).reshape(-1))


def test_a_4_mb_tensor_crosses_binary_rest_and_grpc(nn_run: NnRun, tmp_path: Path, ml_server: Server,
                                                    ks_server: Server) -> None:
    x = np.random.default_rng(1).standard_normal((262144, 4)).astype(np.float32)  # 4 MiB
    for uri in (ks_server.rest(), ks_server.grpc(), ml_server.grpc()):
        status, got = run_affine(nn_run, tmp_path, x, ["--nn-remote", f"affine={uri}"])
        assert status == 0, uri
        np.testing.assert_array_equal(got, (2 * x + 1).reshape(-1))


def test_a_large_tensor_never_goes_through_json(nn_run: NnRun, tmp_path: Path, ml_server: Server,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # MLServer 1.7 has no REST binary extension: a 4 MiB tensor is refused, not sent as JSON.
    x = np.zeros((262144, 4), np.float32)
    status, _ = run_affine(nn_run, tmp_path, x, ["--nn-remote", f"affine={ml_server.rest()}"])
    assert status == EXIT["too_large"]
    logged = capsys.readouterr().err
    assert "json-max-bytes" in logged and "grpc://" in logged


def test_killing_the_server_mid_run_gives_the_guest_an_error_and_the_host_goes_on(
        nn_run: NnRun, tmp_path: Path, own_kserve: Server) -> None:
    x = np.ones((1, 4), np.float32)
    for uri in (own_kserve.rest(), own_kserve.grpc()):
        flags = ["--nn-remote", f"affine={uri}", "--nn-remote-option", "affine:retries=1",
                 "--nn-remote-option", "affine:timeout=5"]
        outcome: dict[str, int] = {}

        def long_run(flags: list[str] = flags, outcome: dict[str, int] = outcome) -> None:
            outcome["status"] = run_affine(nn_run, tmp_path, x, flags, "--repeat", "1000000")[0]

        guest = threading.Thread(target=long_run)
        guest.start()
        time.sleep(1.0)  # let the guest get going (its million runs outlast this by far)
        own_kserve.kill()
        guest.join(timeout=120)
        assert not guest.is_alive(), "the host hung after the server died"
        assert outcome["status"] == EXIT["runtime_error"], uri
        # The same host process goes on: restart the server, and the guest runs again.
        own_kserve.start()
        status, got = run_affine(nn_run, tmp_path, x, flags)
        assert status == 0
        np.testing.assert_array_equal(got, np.full(4, 3.0, np.float32))


def test_explain_names_the_server_and_the_transport(ks_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", "--nn-remote", f"affine={ks_server.grpc()}", "affine"])
    out = capsys.readouterr().out
    assert status == 0
    assert "winner: kserve" in out
    assert ks_server.grpc() in out and "gRPC" in out
    assert "onnx" in out and "serves local models" in out


def test_grpc_port_lets_an_http_endpoint_infer_over_grpc(nn_run: NnRun, tmp_path: Path, ml_server: Server,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # MLServer's REST has no binary tensors: with its gRPC port given, a 4 MiB tensor goes over gRPC.
    x = np.random.default_rng(3).standard_normal((262144, 4)).astype(np.float32)
    flags = ["--nn-remote", f"affine={ml_server.rest()}", "--nn-remote-option",
             f"affine:grpc-port={ml_server.grpc_port}"]
    status, got = run_affine(nn_run, tmp_path, x, flags)
    assert status == 0
    np.testing.assert_array_equal(got, (2 * x + 1).reshape(-1))
    assert f"gRPC (port {ml_server.grpc_port}) for inference" in capsys.readouterr().err
