"""Hostile archives: pickles that would run code, operators that reach host files, broken zips.

Each attack's payload would create a marker file if it ran; the tests check that the model is
refused (or, for sample inputs, loaded without them) and that the marker never appears.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_models import AddOne, Affine, entries, exported, rezip, torchscript

import wasinn
from wasinn import ErrorCode, ExecutionTarget, GraphEncoding, Limits, Tensor, WasiNnError
from wasinn.host.state import StoreState
from wasinn_backend_pytorch import safety


class _Touch:
    """Unpickling this creates ``path``: proof that a pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.path),))  # type: ignore[return-value]


@pytest.fixture
def state() -> Iterator[StoreState]:
    # The embedder opted in to guest TorchScript/.pt2: the backend's own checks are what is tested.
    with wasinn.WasiNnHost(backend="pytorch", limits=Limits(allow_guest_code=True)) as host:
        s = host.new_state()
        yield s
        s.close()


def refused(state: StoreState, model: bytes, words: str) -> None:
    with pytest.raises(WasiNnError) as caught:
        state.load([model], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT, caught.value
    assert words in str(caught.value), caught.value


def _pickled_weight_archive(marker: Path) -> bytes:
    model = exported(Affine(), torch.zeros(1, 4))
    config_name = next(n for n in entries(model) if n.endswith("model_weights_config.json"))
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        config = json.loads(archive.read(config_name))
    first = next(iter(config["config"]))
    config["config"][first]["use_pickle"] = True
    path = config["config"][first]["path_name"]
    weights_dir = config_name.rsplit("/", 1)[0]
    return rezip(model, {config_name: json.dumps(config).encode(),
                         f"{weights_dir}/{path}": pickle.dumps(_Touch(marker))})


def test_a_pickled_weight_in_a_pt2_is_refused_and_never_unpickled(state: StoreState, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    attack = _pickled_weight_archive(marker)
    refused(state, attack, "is pickled, which could run code")
    assert not marker.exists()


def test_the_attack_is_real(tmp_path: Path) -> None:
    """Without our checks torch.export.load runs the pickled payload: what the test above guards."""
    marker = tmp_path / "ran"
    try:
        torch.export.load(io.BytesIO(_pickled_weight_archive(marker)))
    except Exception:
        pass
    assert marker.exists()


def test_pickled_sample_inputs_are_dropped_not_run(state: StoreState, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    model = exported(AddOne(), torch.zeros(2))
    sample = next(n for n in entries(model) if "/sample_inputs/" in n)
    attack = rezip(model, {sample: pickle.dumps(_Touch(marker))})
    graph = state.load([attack], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    context = state.init_execution_context(graph)
    state.set_input(context, 0, Tensor.from_numpy(np.array([1.0, 2.0], np.float32)))
    state.compute(context)
    np.testing.assert_array_equal(state.get_output(context, 0), np.array([2.0, 3.0], np.float32))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["archive/data/constants/opaque_obj_0", "archive/data/constants/custom_obj_0",
                                  "archive/data/weights/model.pt"])
def test_pickled_objects_and_the_legacy_layout_are_refused(state: StoreState, name: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    attack = rezip(exported(AddOne(), torch.zeros(2)), {name: pickle.dumps(_Touch(marker))})
    refused(state, attack, "is not part of a torch.export archive")
    assert not marker.exists()


class _Reader(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_file("/etc/passwd", False, 16, dtype=torch.uint8)


class _Writer(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, "/tmp/wasinn-should-not-exist.pt")
        return x


class _Printer(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print(x)
        return x


class _ReadsWhileLoading(torch.nn.Module):
    """Reads a host file when torch *loads* it (``__setstate__``), and hands it out from forward."""

    def __init__(self) -> None:
        super().__init__()
        self.stolen = torch.zeros(1, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stolen

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.stolen, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.stolen = torch.from_file("/etc/passwd", False, 16, dtype=torch.uint8)
        self.training = state[1]


@pytest.mark.parametrize(("module", "words"), [
    (_Reader, "torch.from_file, which is not an allowed operator"),
    (_Writer, "torch.save, which is not an allowed operator"),
    (_Printer, "calls print(), which is not an allowed builtin"),
    (_ReadsWhileLoading, "a special method torch may call on its own"),
])
def test_torchscript_reaching_host_files_or_stdout_is_refused(state: StoreState, module: type[torch.nn.Module],
                                                              words: str) -> None:
    refused(state, torchscript(module()), words)


def test_the_loaded_graph_is_checked_too() -> None:
    scripted = torch.jit.script(_Reader())
    assert safety.disallowed_kind(_kinds(scripted)) == "aten::from_file"
    assert safety.disallowed_kind(_kinds(torch.jit.script(_Printer()))) == "prim::Print"
    assert safety.disallowed_kind(_kinds(torch.jit.script(AddOne()))) is None


def _kinds(module: torch.jit.ScriptModule) -> list[str]:
    from wasinn_backend_pytorch.backend import _torchscript_kinds

    return _torchscript_kinds(module)


def test_a_torch_save_checkpoint_is_no_model(state: StoreState, tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"weight": torch.ones(2)}, path)
    assert wasinn.detect_format([path.read_bytes()]) == wasinn.ModelFormat.UNKNOWN
    with pytest.raises(WasiNnError) as caught:
        state.load([path.read_bytes()], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT


# A child process loads each broken archive, so that a native crash in torch is a failed test
# naming the variant rather than a dead pytest.
_CHILD = """
import sys, wasinn
from wasinn import ExecutionTarget, GraphEncoding, Limits, WasiNnError
data = open(sys.argv[1], "rb").read()
with wasinn.WasiNnHost(backend="pytorch", limits=Limits(allow_guest_code=True)) as host:
    state = host.new_state()
    try:
        state.load([data], GraphEncoding.PYTORCH, ExecutionTarget.CPU)
        print("loaded")
    except WasiNnError as exc:
        print(exc.code.value)
"""


def _variants(data: bytes, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    for i in range(count):
        broken = bytearray(data)
        kind = i % 3
        if kind == 0:
            broken = broken[: rng.randrange(len(broken))]
        elif kind == 1:
            for _ in range(8):
                broken[rng.randrange(len(broken))] ^= 1 << rng.randrange(8)
        else:
            start = rng.randrange(len(broken))
            broken[start:start + 64] = bytes(rng.getrandbits(8) for _ in range(64))[: len(broken) - start]
        yield f"{['truncated', 'bitflips', 'overwritten'][kind]}-{i}", bytes(broken)


@pytest.mark.parametrize("kind", ["torchscript", "pt2"])
def test_broken_archives_never_crash_the_host(kind: str, tmp_path: Path) -> None:
    good = torchscript(Affine()) if kind == "torchscript" else exported(Affine(), torch.zeros(1, 4))
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    problems = []
    for label, data in _variants(good, 12, seed=11):
        path = tmp_path / f"{label}.bin"
        path.write_bytes(data)
        result = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120)
        answer = result.stdout.strip().splitlines()[-1:] or [""]
        if result.returncode != 0 or answer[0] not in ("loaded", "invalid_argument", "invalid_encoding"):
            problems.append(f"{label}: exit {result.returncode}, {answer[0]!r}, {result.stderr[-300:]}")
    assert not problems, "\n".join(problems)
