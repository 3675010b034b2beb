"""A guest's ONNX model in a confined worker (wasinn.worker, issue 28): the same outputs as
in-process, and the 104-byte ``ConstantOfShape`` memory bomb stopped at the worker's cap with the
host's peak memory measured in a child process (the control: in-process, the same model makes the
host allocate the gigabyte)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_test_models import LIGHT, affine_model, light_input, multi_io_model

import wasinn
from wasinn import Limits
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn.worker import proxy


def run(guest: TrampolineGuest, model: bytes, inputs: list[np.ndarray], outputs: list[tuple[object, tuple[int, ...]]]
        ) -> list[np.ndarray]:
    graph = guest.load([model])
    assert graph.ok, graph
    ctx = guest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert ctx is not None
    for index, array in enumerate(inputs):
        assert guest.set_input(ctx, index, array).ok
    assert guest.compute(ctx).ok
    found = []
    for index, (dtype, shape) in enumerate(outputs):
        call, out = guest.get_output(ctx, index, dtype, shape, max_bytes=1 << 24)
        assert call.ok
        found.append(out)
    return found


@pytest.mark.parametrize("policy", ["isolate", "in-process"])
def test_outputs_are_identical_isolated_and_in_process(policy: str) -> None:
    results = {}
    for mode in (policy, "in-process"):
        with wasinn.WasiNnHost(limits=Limits(guest_models=mode)) as host:
            guest = TrampolineGuest(host)
            x = np.arange(4, dtype=np.float32).reshape(1, 4)
            zeta, alpha = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3, dtype=np.int64)
            results[mode] = run(guest, affine_model(), [x], [(np.float32, (1, 4))]) + \
                run(guest, multi_io_model(), [zeta, alpha], [(np.float32, (2, 3)), (np.int64, (3,)),
                                                             (np.float64, (2, 3))])
            assert isinstance(guest.state.graph(0).graph.state, proxy.WorkerGraph) == (mode == "isolate")
            guest.close()
    for a, b in zip(results[policy], results["in-process"], strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_real_architecture_is_identical_isolated() -> None:
    path = LIGHT / "light_squeezenet.onnx"
    model = path.read_bytes()
    x = light_input(path)
    outs = {}
    for mode in ("isolate", "in-process"):
        with wasinn.WasiNnHost(limits=Limits(guest_models=mode)) as host:
            guest = TrampolineGuest(host)
            outs[mode] = run(guest, model, [x], [(np.float32, (1, 1000))])[0]
            guest.close()
    assert np.array_equal(outs["isolate"], outs["in-process"])


def bomb(elements: int) -> bytes:
    """The ConstantOfShape bomb: 104 bytes of ONNX that ask for ``elements`` floats when run."""
    shape = helper.make_tensor("s", TensorProto.INT64, [1], [elements])
    graph = helper.make_graph([helper.make_node("ConstantOfShape", ["s"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    data: bytes = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9
                                    ).SerializeToString()
    return data


CHILD = r"""
import json, sys
import wasinn
from wasinn import Limits
from wasinn.testing.guest import TrampolineGuest
policy, path = sys.argv[1], sys.argv[2]
with wasinn.WasiNnHost(limits=Limits(guest_models=policy, worker_memory_bytes=256 << 20)) as host:
    guest = TrampolineGuest(host)
    load = guest.load([open(path, "rb").read()])
    errno, again = load.errno, None
    if load.ok:
        init = guest.init_execution_context(load.value)  # onnx sizes its outputs here
        errno = guest.compute(init.value).errno if init.ok else init.errno
        again = guest.init_execution_context(load.value).errno if errno else None
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) << 10
    print(json.dumps({"load": load.errno, "errno": errno, "again": again, "hwm": hwm}))
"""


def host_child(policy: str, model: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", CHILD, policy, str(model)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("gib", [1, 3])
def test_a_constant_of_shape_bomb_is_stopped_by_the_cap(tmp_path: Path, gib: int) -> None:
    path = tmp_path / "bomb.onnx"
    path.write_bytes(bomb(gib << 28))
    isolated = host_child("isolate", path)
    if gib > 1:
        # Over max_tensor_bytes, the output's static shape already refuses it at load (the onnx
        # backend's own bound): the worker never allocates either.
        assert isolated["load"] == ERRNO["too_large"]
    else:
        assert isolated["load"] == 0
        assert isolated["errno"] in (ERRNO["too_large"], ERRNO["runtime_error"])
        assert isolated["again"] == isolated["errno"], "the graph answers again (alive or dead), the host goes on"
    assert isolated["hwm"] < 600 << 20, "the host's own peak memory stayed small"
    if gib == 1:  # the control: in-process, the host itself allocates the gigabyte
        control = host_child("in-process", path)
        assert control["errno"] == 0 and control["hwm"] > 1 << 30
