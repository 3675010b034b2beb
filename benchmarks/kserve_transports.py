"""A guest's inference on an inference server, through wasinn, against the server's own Python client.

    python benchmarks/kserve_transports.py [--quick] [--rounds R] [--out FILE]

Needs the ``kserve`` tox env's packages (wasinn-backend-kserve[test]: MLServer, KServe, tritonclient).
It starts KServe's ModelServer and MLServer on 127.0.0.1 (the test fixtures' servers), both serving
the affine model y = 2x + 1 on f32[n, 4], then for a tiny tensor (f32[1,4]) and 4, 16 and 64 MB ones:

* **guest**: a WAT guest (``peer_wasmtime.guest_wat``) under ``wasinn run --nn-remote affine=URI``:
  load_by_name("affine"), then N times set_input + compute + get_output on zeros, no I/O. Per
  inference = (wall(N) - wall(0)) / N: start-up, wasm compilation, readiness and metadata cancel out.
  (The nn-run guest checks the answer first; it is not timed: it writes a file per inference.)
* **client**: the same request from ``tritonclient`` called natively (``tritonclient.http`` with
  binary tensors, or JSON for MLServer's REST; ``tritonclient.grpc``), the mean of N calls.

Transports: KServe REST (binary extension), KServe gRPC, MLServer gRPC, MLServer REST (JSON: the tiny
tensor only; wasinn refuses to send large tensors as JSON). Best of ``--rounds`` for each cell
(three times as many for the tiny tensor), guest and client alternating.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "packages" / "wasinn-backend-kserve" / "tests")]

from kserve_servers import NN_RUN, WITX_F32, Server, affine_model, kserve, mlserver  # noqa: E402
from peer_wasmtime import guest_wat  # noqa: E402

from wasinn.cli.main import main  # noqa: E402

SIZES = {"tiny": (1, 4), "4 MB": (262144, 4), "16 MB": (1048576, 4), "64 MB": (4194304, 4)}
REPS = {"tiny": 1000, "4 MB": 10, "16 MB": 5, "64 MB": 3}
QUICK_REPS = {"tiny": 300, "4 MB": 4, "16 MB": 3, "64 MB": 2}


def run_guest(argv: list[str], uri: str) -> float:
    started = time.perf_counter()
    status = main(["run", "-q", "--nn-remote", f"affine={uri}", *argv])
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"the guest failed on {uri} (exit {status})")
    return elapsed


def check_answer(folder: Path, uri: str, shape: tuple[int, int]) -> None:
    """The unchanged nn-run guest, once: the server's answer must be 2x + 1."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x.astype("<f4").tofile(folder / "in.bin")
    run_guest(["--dir", f"{folder}::/d", str(NN_RUN), "--load-by-name", "affine", "--input", "0", WITX_F32,
               "x".join(map(str, shape)), "/d/in.bin", "--output", "0", "/d/out.bin", str(x.nbytes + 16)], uri)
    if not np.array_equal(np.fromfile(folder / "out.bin", dtype="<f4"), (2 * x + 1).reshape(-1)):
        raise SystemExit(f"wrong answer from {uri}")


def guest_per_inference(folder: Path, uri: str, shape: tuple[int, int], n: int) -> float:
    nbytes = shape[0] * shape[1] * 4
    files = []
    for count in (n, 0):
        path = folder / f"loop{count}.wat"
        path.write_text(guest_wat("affine", shape, 1, nbytes, nbytes, count))
        files.append(path)
    many = run_guest([str(files[0])], uri)
    none = run_guest([str(files[1])], uri)
    return max(many - none, 0.0) / n


def client_call(kind: str, server: Server, x: np.ndarray) -> Callable[[], np.ndarray]:
    """One native tritonclient call (the client is made once, outside the timing)."""
    if kind == "grpc":
        import tritonclient.grpc as tc_grpc

        grpc_client = tc_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        grpc_input = tc_grpc.InferInput("x", list(x.shape), "FP32")

        def grpc_call() -> np.ndarray:
            grpc_input.set_data_from_numpy(x)
            result = grpc_client.infer("affine", [grpc_input], outputs=[tc_grpc.InferRequestedOutput("y")])
            return result.as_numpy("y")  # type: ignore[no-any-return]

        return grpc_call
    import tritonclient.http as tc_http

    binary = kind == "binary"
    http_client = tc_http.InferenceServerClient(f"127.0.0.1:{server.http_port}", connection_timeout=60,
                                                network_timeout=60)
    http_input = tc_http.InferInput("x", list(x.shape), "FP32")

    def http_call() -> np.ndarray:
        http_input.set_data_from_numpy(x, binary_data=binary)
        # KServe reads a binary body only when told it is one (tritonclient sends no Content-Type).
        headers = {"Content-Type": "application/octet-stream"} if binary else None
        result = http_client.infer("affine", [http_input], headers=headers,
                                   outputs=[tc_http.InferRequestedOutput("y", binary_data=binary)])
        return result.as_numpy("y")  # type: ignore[no-any-return]

    return http_call


def client_per_inference(call: Callable[[], np.ndarray], x: np.ndarray, n: int) -> float:
    got = call()  # warm: connection, first-request costs
    if not np.array_equal(got, 2 * x + 1):
        raise SystemExit("wrong answer from the native client")
    # The mean over N calls, as the guest's figure is (its loop's wall time / N).
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--rounds", type=int, default=2, help="best of this many rounds per cell")
    parser.add_argument("--out", type=Path, default=HERE / "kserve_results.json")
    args = parser.parse_args()
    reps = QUICK_REPS if args.quick else REPS
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wasinn-kserve-bench-") as scratch:
        root = Path(scratch)
        model = root / "affine.onnx"
        model.write_bytes(affine_model())
        servers = {"KServe": kserve(root, model), "MLServer": mlserver(root, model)}
        for server in servers.values():
            server.start()
        try:
            routes = [("KServe", "REST binary", "binary"), ("KServe", "gRPC", "grpc"),
                      ("MLServer", "gRPC", "grpc"), ("MLServer", "REST JSON", "json")]
            for size, shape in SIZES.items():
                x = np.zeros(shape, np.float32)  # what the WAT guest sends
                for server_name, transport, kind in routes:
                    if kind == "json" and size != "tiny":
                        continue
                    server = servers[server_name]
                    uri = server.grpc() if kind == "grpc" else server.rest()
                    folder = root / "guest"
                    folder.mkdir(exist_ok=True)
                    n = reps[size]
                    call = client_call(kind, server, x)
                    check_answer(folder, uri, shape)
                    # The tiny cells are cheap and the noisiest: three times the rounds.
                    rounds = args.rounds * 3 if size == "tiny" else args.rounds
                    guest = client = float("inf")
                    for _ in range(rounds):  # alternate, so that a busy moment hits both sides
                        guest = min(guest, guest_per_inference(folder, uri, shape, n))
                        client = min(client, client_per_inference(call, x, n))
                    row = {"server": server_name, "transport": transport, "size": size, "bytes": x.nbytes,
                           "guest_ms": guest * 1000, "client_ms": client * 1000, "ratio": guest / client}
                    rows.append(row)
                    print(f"{server_name:8} {transport:11} {size:6} guest {row['guest_ms']:9.2f} ms   "
                          f"client {row['client_ms']:9.2f} ms   ratio {row['ratio']:.3f}", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    args.out.write_text(json.dumps({"rows": rows, "reps": reps, "rounds": args.rounds}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_bench()
