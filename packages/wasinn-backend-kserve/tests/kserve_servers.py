"""Real inference servers for the tests, started on 127.0.0.1 only and stopped by their own PID.

* MLServer (``mlserver start DIR``) with the custom ONNX Runtime runtime in ``servers/mlserver_affine.py``;
* KServe's ``kserve.ModelServer`` (``servers/kserve_affine.py``), made to bind 127.0.0.1.

Both serve the affine model that :func:`affine_model` builds (the same file the local runs use).
(A plain module, uniquely named: test folders of several packages share one ``sys.path``.)
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import TensorProto, helper

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"
SERVERS = HERE / "servers"
#: How long a server may take to come up on a busy two-core machine (a bound, not a measurement).
START_LIMIT = 180.0
#: nn-run's exit status is 64 + the witx errno.
EXIT = {"invalid_argument": 65, "busy": 68, "runtime_error": 69, "unsupported_operation": 70, "too_large": 71,
        "not_found": 72}
WITX_F32 = "1"


def affine_model() -> bytes:
    """y = 2x + 1 on f32[n, 4] (n dynamic, so one model serves tiny and 64 MB tensors)."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [helper.make_node("Constant", [], ["c2"], value=two), helper.make_node("Constant", [], ["c1"], value=one),
             helper.make_node("Mul", ["x", "c2"], ["t"]), helper.make_node("Add", ["t", "c1"], ["y"])]
    graph = helper.make_graph(nodes, "affine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    onnx.checker.check_model(proto)
    data: bytes = proto.SerializeToString()
    return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


@dataclass
class Server:
    """One server process: what it serves and how to reach it."""

    kind: str  # mlserver or kserve
    command: list[str]
    cwd: Path
    log: Path
    http_port: int
    grpc_port: int
    models: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def rest(self, model: str = "affine") -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/models/{model}"

    def grpc(self, model: str = "affine") -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}/{model}"

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                            start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_LIMIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}:\n{self.tail()}")
            if _get(self.http_port, "/v2/health/ready") == 200 and all(
                    _get(self.http_port, f"/v2/models/{m}/ready") == 200 for m in self.models):
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready within {START_LIMIT:g} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop our process by its PID (its session: MLServer and uvicorn may fork helpers)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)  # the group we created with start_new_session, led by our PID
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)

    def kill(self) -> None:
        """A crash: SIGKILL, no graceful shutdown."""
        self.stop(signal.SIGKILL)

    def listening(self) -> list[str]:
        """The local addresses (``IP:PORT``) the server's processes listen on, read from /proc as
        ``ss -ltnp`` would show them (no iproute2 needed)."""
        assert self.process is not None
        inodes: set[str] = set()
        for pid in {str(self.process.pid), *_children(self.process.pid)}:
            try:
                links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
        found = []
        for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                    address, port = fields[1].split(":")
                    found.append(f"{_address(address, width)}:{int(port, 16)}")
        return found

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def _address(hex_address: str, width: int) -> str:
    """/proc/net/tcp's little-endian hex address as text (IPv6 in brackets)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET, words) if width == 4 else f"[{socket.inet_ntop(socket.AF_INET6, words)}]"


def _children(pid: int) -> set[str]:
    found: set[str] = set()
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            child = status.parent.name
            found |= {child, *_children(int(child))}
    return found


def mlserver(root: Path, model: Path) -> Server:
    folder = root / "mlserver"
    (folder / "affine").mkdir(parents=True, exist_ok=True)
    shutil.copy(SERVERS / "mlserver_affine.py", folder / "affine" / "mlserver_affine.py")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "parallel_workers": 0, "grpc_max_message_length": 512 * 1024 * 1024, "gzip_enabled": False,
        "debug": False,
    }))
    (folder / "affine" / "model-settings.json").write_text(json.dumps({
        "name": "affine", "implementation": "mlserver_affine.OnnxAffine",
        "parameters": {"uri": str(model)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
    }))
    mlserver_bin = Path(sys.executable).with_name("mlserver")
    return Server("mlserver", [str(mlserver_bin), "start", str(folder)], folder, root / "mlserver.log", http_port,
                  grpc_port, ("affine",))


def kserve(root: Path, model: Path) -> Server:
    http_port, grpc_port = free_port(), free_port()
    command = [sys.executable, str(SERVERS / "kserve_affine.py"), str(model), str(http_port), str(grpc_port)]
    return Server("kserve", command, root, root / "kserve.log", http_port, grpc_port,
                  ("affine", "slow", "broken", "liar", "wrongtype"))
