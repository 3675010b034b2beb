"""A pure-numpy backend for the ``wasinn-test`` format, plus a GPU-flavoured variant for ranking tests.

Module-level hooks make the ``fake`` backend (a module plugin); :class:`GpuFake` is a class plugin
(the entry point names the class; wasinn instantiates it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from wasinn import (
    BackendInfo,
    Context,
    Decline,
    ErrorCode,
    ExecutionTarget,
    Graph,
    Hardware,
    ModelDescription,
    ModelFormat,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
    hookimpl,
)
from wasinn_test_backends import FORMAT, MAGIC

#: Live objects, so tests can check that wasinn releases everything.
LIVE_GRAPHS: set[int] = set()
LIVE_CONTEXTS: set[int] = set()
_lock = threading.Lock()
TENSOR_TYPES = (TensorType.F16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I32, TensorType.I64)


def _spec(item: dict[str, Any]) -> TensorSpec:
    return TensorSpec(item["name"], TensorType(item["dtype"]), tuple(item["shape"]))


def parse(model: ModelDescription) -> dict[str, Any]:
    data = model.builders[0]
    if not data.startswith(MAGIC):
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "not a wasinn-test model")
    try:
        spec = json.loads(data[len(MAGIC):])
    except ValueError as exc:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"bad wasinn-test model: {exc}") from None
    if not isinstance(spec, dict):
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "bad wasinn-test model: not an object")
    return spec


#: A misbehaviour's argument that stands for the model's own file (``ModelDescription.paths``).
OWN_MODEL = "<own model>"


def _fail(spec: dict[str, Any], hook: str, model: ModelDescription | None = None) -> None:
    if spec.get("fail") == hook:
        raise RuntimeError(f"{hook} failed on purpose")
    hostile = spec.get("misbehave")
    if isinstance(hostile, dict) and hostile.get("hook", "load") == hook:
        arg = hostile.get("arg")
        if arg == OWN_MODEL:
            if model is None or not model.paths:
                raise RuntimeError("the model has no file")
            arg = str(model.paths[0])
        misbehave(str(hostile["do"]), arg)


def misbehave(action: str, arg: Any = None) -> None:
    """What a model that took over its runtime could do (tests of wasinn.worker's confinement):
    each action either succeeds (in-process, the control) or raises / kills the process."""
    import ctypes
    import os
    import signal
    import socket
    import subprocess
    import time

    if action == "write":  # create a file
        with open(arg, "w") as file:
            file.write("written by a model")
    elif action == "append":  # touch an existing file
        with open(arg, "a") as file:
            file.write("appended by a model")
    elif action == "read":  # read a host file (then fail, carrying what it read)
        with open(arg, "rb") as file:
            raise RuntimeError(f"read {file.read(64)!r}")
    elif action == "connect":  # a TCP connection to a host port
        socket.create_connection(("127.0.0.1", int(arg)), timeout=5).close()
    elif action == "unix":  # a UNIX socket
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(arg)
        client.close()
    elif action == "exec":  # replace the process with a shell
        os.execv("/bin/sh", ["sh", "-c", f"echo exec > {arg}"])
    elif action == "subprocess":  # run a program
        subprocess.run(["/bin/sh", "-c", f"echo run > {arg}"], check=True)
    elif action == "fork":  # a new process
        pid = os.fork()
        if pid == 0:
            with open(arg, "w") as file:
                file.write("forked")
            os._exit(0)
        os.waitpid(pid, 0)
    elif action == "kill":  # signal another process (the host)
        os.kill(int(arg), signal.SIGTERM)
    elif action == "alloc":  # allocate (and touch) arg bytes
        block = bytearray(int(arg))
        block[::4096] = b"x" * len(block[::4096])
    elif action == "spin":  # burn CPU for ever
        while True:
            pass
    elif action == "sleep":  # block without using CPU
        time.sleep(float(arg))
    elif action == "abort":
        os.abort()
    elif action == "segv":
        ctypes.string_at(0)
    elif action == "exit":
        os._exit(int(arg or 0))
    elif action == "kill-self":
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        raise ValueError(f"unknown misbehaviour {action!r}")


class FakeBackend:
    name = "fake"
    score = 50.0
    targets = (ExecutionTarget.CPU, ExecutionTarget.GPU)

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="numpy", runtime_version=np.__version__, formats=(ModelFormat(FORMAT),),
                           targets=self.targets, tensor_types=TENSOR_TYPES, summary="test backend")

    @hookimpl
    def detect_format(self, builders: Sequence[bytes]) -> str | None:
        return FORMAT if len(builders) == 1 and bytes(builders[0][:4]) == MAGIC else None

    def target_score(self, model: ModelDescription, hw: Hardware) -> Score | Decline:
        if model.target is ExecutionTarget.GPU and not hw.has(ExecutionTarget.GPU):
            return Decline("no GPU on this machine", ErrorCode.UNSUPPORTED_OPERATION)
        if model.target is ExecutionTarget.TPU:
            return Decline("no TPU support", ErrorCode.UNSUPPORTED_OPERATION)
        return Score(self.score, f"{self.name} runs {FORMAT} on {model.target.value}", device=model.target.value)

    @hookimpl
    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline | None:
        if model.format != FORMAT:
            return None
        return self.target_score(model, hw)

    @hookimpl
    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        spec = parse(model)
        _fail(spec, "load", model)
        answer = self.target_score(model, hw)
        if isinstance(answer, Decline):
            raise WasiNnError(answer.code, answer.reason)
        graph = Graph(inputs=[_spec(i) for i in spec["inputs"]], outputs=[_spec(o) for o in spec["outputs"]],
                      device=model.target.value, state=spec)
        with _lock:
            LIVE_GRAPHS.add(id(graph))
        return graph

    @hookimpl
    def unload(self, graph: Graph) -> None:
        with _lock:
            LIVE_GRAPHS.discard(id(graph))

    @hookimpl
    def init_execution_context(self, graph: Graph) -> Context:
        _fail(graph.state, "init")
        context = Context(graph, state={"inputs": {}, "outputs": None})
        with _lock:
            LIVE_CONTEXTS.add(id(context))
        return context

    @hookimpl
    def finalize_execution_context(self, context: Context) -> None:
        with _lock:
            LIVE_CONTEXTS.discard(id(context))

    @hookimpl
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        _fail(context.graph.state, "set_input")
        spec = context.graph.inputs[index]
        if tensor.dtype is not spec.dtype or not spec.accepts_shape(tensor.shape):
            got = f"{tensor.dtype.value}{list(tensor.shape)}"
            message = f"input {index} ({spec.name}) expects {spec.describe()}, got {got}"
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, message)
        context.state["inputs"][index] = tensor.numpy().copy()  # the view dies with the call

    @hookimpl
    def compute(self, context: Context) -> None:
        graph = context.graph
        _fail(graph.state, "compute")
        inputs = context.state["inputs"]
        missing = [i for i in range(len(graph.inputs)) if i not in inputs]
        if missing:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input(s) {missing} not set")
        scale, bias = graph.state.get("scale", 1), graph.state.get("bias", 0)
        outputs = []
        for j, spec in enumerate(graph.outputs):
            source = inputs[j % len(graph.inputs)]
            assert spec.dtype is not None
            outputs.append((source * scale + bias).astype(spec.dtype.numpy_dtype))
        context.state["outputs"] = outputs

    @hookimpl
    def get_output(self, context: Context, index: int) -> np.ndarray:
        _fail(context.graph.state, "get_output")
        outputs = context.state["outputs"]
        if outputs is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run")
        result: np.ndarray = outputs[index]
        return result


class GpuFake(FakeBackend):
    """Same format; strong on a GPU, weak on the CPU. Ranking tests pit it against ``fake``."""

    name = "fakegpu"

    def target_score(self, model: ModelDescription, hw: Hardware) -> Score | Decline:
        if model.target is ExecutionTarget.GPU:
            if not hw.has(ExecutionTarget.GPU):
                return Decline("no GPU on this machine", ErrorCode.UNSUPPORTED_OPERATION)
            return Score(80, "fakegpu on the GPU", device="gpu:0")
        if model.target is ExecutionTarget.CPU:
            return Score(10, "fakegpu can fall back to the CPU, slowly", device="cpu")
        return Decline("no TPU support", ErrorCode.UNSUPPORTED_OPERATION)


_module_backend = FakeBackend()
# The ``fake`` entry point names this module: expose the instance's hooks as module attributes.
backend_info = _module_backend.backend_info
detect_format = _module_backend.detect_format
can_handle = _module_backend.can_handle
load = _module_backend.load
unload = _module_backend.unload
init_execution_context = _module_backend.init_execution_context
finalize_execution_context = _module_backend.finalize_execution_context
set_input = _module_backend.set_input
compute = _module_backend.compute
get_output = _module_backend.get_output
