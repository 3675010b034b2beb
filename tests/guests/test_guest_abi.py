"""Guest-ABI tests: run the committed guests against a fake wasi-nn host.

The fake host below is *not* the real wasinn host: it defines the
``wasi_ephemeral_nn`` functions directly with wasmtime-py, records what the
guest passed (graph-builder array, tensor record layout, dims, data length,
buffer sizes, handles) and returns canned results.  These tests therefore check
the guest side of the ABI and the guests' command-line behaviour only.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import wasmtime

GUESTS = Path(__file__).resolve().parents[2] / "guests"
NN_RUN = GUESTS / "nn-run" / "nn-run.wasm"
DIGITS = GUESTS / "digits" / "digits.wasm"

I32 = wasmtime.ValType.i32()

# name -> number of i32 parameters (all return one i32 errno)
NN_FUNCS = {
    "load": 5,
    "load_by_name": 3,
    "load_by_name_with_config": 5,
    "init_execution_context": 2,
    "set_input": 3,
    "compute": 1,
    "get_output": 5,
    "unload": 1,
    "finalize_execution_context": 1,
}

# The fake's handles are distinctive so the tests can see the guest passes them back.
GRAPH_BASE = 100
CTX_BASE = 200
TEN_FLOATS = struct.pack("<10f", *range(10))


@dataclass
class Tensor:
    dims: list[int]
    type: int
    pad: bytes
    data: bytes


@dataclass
class FakeNN:
    """Records every wasi_ephemeral_nn call; `fail` maps a function name to the errno it returns."""

    output: Callable[[FakeNN, int, int], bytes] = lambda fake, ctx, index: TEN_FLOATS
    fail: dict[str, int] = field(default_factory=dict)
    calls: list[tuple] = field(default_factory=list)
    inputs: dict[int, dict[int, Tensor]] = field(default_factory=dict)
    n_graphs: int = 0
    n_ctxs: int = 0

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def of(self, name: str) -> list[tuple]:
        return [c[1:] for c in self.calls if c[0] == name]

    # -- wasi_ephemeral_nn implementations ------------------------------------

    def _new_graph(self, mem, caller, out_ptr: int) -> None:
        mem.write(caller, struct.pack("<I", GRAPH_BASE + self.n_graphs), out_ptr)
        self.n_graphs += 1

    def load(self, mem, caller, builders_ptr, count, encoding, target, out_ptr):
        raw = mem.read(caller, builders_ptr, builders_ptr + 8 * count)
        bufs = []
        for k in range(count):
            ptr, length = struct.unpack_from("<II", raw, 8 * k)
            bufs.append(bytes(mem.read(caller, ptr, ptr + length)))
        self.calls.append(("load", bufs, encoding, target))
        self._new_graph(mem, caller, out_ptr)

    def load_by_name(self, mem, caller, name_ptr, name_len, out_ptr):
        name = bytes(mem.read(caller, name_ptr, name_ptr + name_len)).decode()
        self.calls.append(("load_by_name", name))
        self._new_graph(mem, caller, out_ptr)

    def load_by_name_with_config(
        self, mem, caller, name_ptr, name_len, cfg_ptr, cfg_len, out_ptr
    ):
        name = bytes(mem.read(caller, name_ptr, name_ptr + name_len)).decode()
        cfg = bytes(mem.read(caller, cfg_ptr, cfg_ptr + cfg_len)).decode()
        self.calls.append(("load_by_name_with_config", name, cfg))
        self._new_graph(mem, caller, out_ptr)

    def init_execution_context(self, mem, caller, graph, out_ptr):
        self.calls.append(("init_execution_context", graph))
        ctx = CTX_BASE + self.n_ctxs
        self.n_ctxs += 1
        mem.write(caller, struct.pack("<I", ctx), out_ptr)

    def set_input(self, mem, caller, ctx, index, tensor_ptr):
        assert tensor_ptr % 4 == 0, "tensor record must be 4-byte aligned"
        dims_ptr, dims_len, ttype, pad, data_ptr, data_len = struct.unpack(
            "<IIB3sII", mem.read(caller, tensor_ptr, tensor_ptr + 20)
        )
        dims = list(
            struct.unpack(
                f"<{dims_len}I", mem.read(caller, dims_ptr, dims_ptr + 4 * dims_len)
            )
        )
        tensor = Tensor(
            dims,
            ttype,
            bytes(pad),
            bytes(mem.read(caller, data_ptr, data_ptr + data_len)),
        )
        self.calls.append(("set_input", ctx, index, tensor))
        self.inputs.setdefault(ctx, {})[index] = tensor

    def compute(self, mem, caller, ctx):
        self.calls.append(("compute", ctx))

    def get_output(self, mem, caller, ctx, index, buf_ptr, max_bytes, written_ptr):
        self.calls.append(("get_output", ctx, index, max_bytes))
        data = self.output(self, ctx, index)
        if len(data) > max_bytes:
            return 7  # too_large
        if data:
            mem.write(caller, data, buf_ptr)
        mem.write(caller, struct.pack("<I", len(data)), written_ptr)

    def unload(self, mem, caller, graph):
        self.calls.append(("unload", graph))

    def finalize_execution_context(self, mem, caller, ctx):
        self.calls.append(("finalize_execution_context", ctx))

    def define(self, linker: wasmtime.Linker) -> None:
        for name, nparams in NN_FUNCS.items():
            ty = wasmtime.FuncType([I32] * nparams, [I32])
            linker.define_func(
                "wasi_ephemeral_nn", name, ty, self._wrap(name), access_caller=True
            )

    def _wrap(self, name: str):
        method = getattr(self, name)

        def func(caller, *args):
            # wasm i32 arrives signed; the ABI means u32
            args = tuple(a & 0xFFFFFFFF for a in args)
            if name in self.fail:
                self.calls.append((name + ":failed", *args))
                return self.fail[name]
            mem = caller.get("memory")
            return method(mem, caller, *args) or 0

        return func


@functools.cache
def _engine() -> wasmtime.Engine:
    return wasmtime.Engine()


@functools.cache
def _module(path: Path) -> wasmtime.Module:
    return wasmtime.Module.from_file(_engine(), str(path))


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_guest(
    wasm: Path, args: list[str], fake: FakeNN, tmp_path: Path, preopens: dict[str, Path]
) -> Result:
    linker = wasmtime.Linker(_engine())
    linker.define_wasi()
    fake.define(linker)
    store = wasmtime.Store(_engine())
    cfg = wasmtime.WasiConfig()
    cfg.argv = [wasm.stem, *args]
    out, err = tmp_path / "guest.stdout", tmp_path / "guest.stderr"
    cfg.stdout_file = str(out)
    cfg.stderr_file = str(err)
    for guest_path, host_path in preopens.items():
        cfg.preopen_dir(str(host_path), guest_path)
    store.set_wasi(cfg)
    instance = linker.instantiate(store, _module(wasm))
    start = instance.exports(store)["_start"]
    try:
        start(store)
        code = 0
    except wasmtime.ExitTrap as exc:
        code = exc.code
    return Result(code, out.read_text(), err.read_text())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def nn_run(args: list[str], fake: FakeNN, tmp_path: Path, data: Path) -> Result:
    return run_guest(NN_RUN, args, fake, tmp_path, {"/data": data})


# ---- nn-run ---------------------------------------------------------------------


def test_nn_run_load_files_input_output(tmp_path, data):
    (data / "model.xml").write_bytes(b"<xml/>")
    (data / "model.bin").write_bytes(bytes(range(256)) * 3)
    inp = struct.pack("<4f", 0.5, -1.0, 2.0, 3.25)
    (data / "in.bin").write_bytes(inp)
    fake = FakeNN()
    res = nn_run(
        ["--load", "0", "1", "/data/model.xml,/data/model.bin",
         "--input", "0", "1", "1x4", "/data/in.bin",
         "--output", "0", "/data/out.bin",
         "--print-output", "0", "1"],
        fake, tmp_path, data,
    )  # fmt: skip
    assert res.code == 0, res.stderr
    assert fake.names() == [
        "load",
        "init_execution_context",
        "set_input",
        "compute",
        "get_output",
        "get_output",
    ]
    assert fake.of("load") == [([b"<xml/>", bytes(range(256)) * 3], 0, 1)]
    assert fake.of("init_execution_context") == [(GRAPH_BASE,)]
    ((ctx, index, tensor),) = fake.of("set_input")
    assert (ctx, index) == (CTX_BASE, 0)
    assert tensor == Tensor([1, 4], 1, b"\0\0\0", inp)
    assert fake.of("compute") == [(CTX_BASE,)]
    assert fake.of("get_output") == [(CTX_BASE, 0, 64 << 20)] * 2
    assert (data / "out.bin").read_bytes() == TEN_FLOATS
    assert [float(v) for v in res.stdout.split()] == [float(v) for v in range(10)]
    assert res.stdout.count("\n") == 1


def test_nn_run_load_by_name_and_config(tmp_path, data):
    fake = FakeNN()
    res = nn_run(
        ["--load-by-name", "mobilenet", "--contexts", "0"], fake, tmp_path, data
    )
    assert res.code == 0, res.stderr
    assert fake.calls == [("load_by_name", "mobilenet")]

    fake = FakeNN()
    cfg = '{"ctx-size": 512, "n-gpu-layers": 0}'
    res = nn_run(
        ["--load-by-name-config", "llama", cfg, "--contexts", "0"], fake, tmp_path, data
    )
    assert res.code == 0, res.stderr
    assert fake.calls == [("load_by_name_with_config", "llama", cfg)]


def test_nn_run_repeat_contexts_unload(tmp_path, data):
    (data / "a.bin").write_bytes(bytes([1, 2, 3, 4]))
    (data / "b.bin").write_bytes(struct.pack("<2q", -5, 7))
    fake = FakeNN(output=lambda f, ctx, index: struct.pack("<3i", ctx, index, -1))
    res = nn_run(
        ["--load-by-name", "m",
         "--input", "0", "3", "2x2", "/data/a.bin",
         "--input", "2", "5", "2", "/data/b.bin",
         "--print-output", "1", "4",
         "--repeat", "3", "--contexts", "2", "--unload"],
        fake, tmp_path, data,
    )  # fmt: skip
    assert res.code == 0, res.stderr
    run = ["set_input", "set_input", "compute", "get_output"]
    assert fake.names() == (
        ["load_by_name", "init_execution_context", "init_execution_context"]
        + run * 6
        + ["finalize_execution_context", "finalize_execution_context", "unload"]
    )
    assert fake.of("init_execution_context") == [(GRAPH_BASE,)] * 2
    sets = fake.of("set_input")
    assert [(c, i) for c, i, _ in sets] == [(CTX_BASE, 0), (CTX_BASE, 2)] * 3 + [
        (CTX_BASE + 1, 0),
        (CTX_BASE + 1, 2),
    ] * 3
    assert sets[0][2] == Tensor([2, 2], 3, b"\0\0\0", bytes([1, 2, 3, 4]))
    assert sets[1][2] == Tensor([2], 5, b"\0\0\0", struct.pack("<2q", -5, 7))
    assert fake.of("compute") == [(CTX_BASE,)] * 3 + [(CTX_BASE + 1,)] * 3
    assert fake.of("finalize_execution_context") == [(CTX_BASE,), (CTX_BASE + 1,)]
    assert fake.of("unload") == [(GRAPH_BASE,)]
    assert (
        res.stdout.splitlines()
        == [f"{CTX_BASE} 1 -1"] * 3 + [f"{CTX_BASE + 1} 1 -1"] * 3
    )


def test_nn_run_passes_values_through_unchecked(tmp_path, data):
    """Rank-0 dims, an unknown type code and odd enum values reach the host verbatim."""
    (data / "x.bin").write_bytes(b"\x01\x02\x03")
    (data / "m").write_bytes(b"")
    fake = FakeNN()
    res = nn_run(
        [
            "--load",
            "4294967295",
            "7",
            "/data/m",
            "--input",
            "9",
            "200",
            "",
            "/data/x.bin",
        ],
        fake,
        tmp_path,
        data,
    )
    assert res.code == 0, res.stderr
    assert fake.of("load") == [([b""], 0xFFFFFFFF, 7)]
    ((_, index, tensor),) = fake.of("set_input")
    assert index == 9
    assert tensor == Tensor([], 200, b"\0\0\0", b"\x01\x02\x03")


@pytest.mark.parametrize(
    ("ttype", "fmt", "values"),
    [
        (0, "e", [1.5, -0.25, 65504.0, 6e-08]),
        (1, "f", [0.1, -3.0, 1e-40, 3.4e38]),
        (2, "d", [math.pi, -1e300, 5e-324]),
        (3, "B", [0, 17, 255]),
        (4, "i", [-(2**31), 42]),
        (5, "q", [-(2**63), 2**40]),
    ],
)
def test_nn_run_print_output_types(tmp_path, data, ttype, fmt, values):
    payload = struct.pack(f"<{len(values)}{fmt}", *values)
    stray = (
        b"" if ttype == 3 else b"\x01"
    )  # a trailing partial element is reported, not printed
    fake = FakeNN(output=lambda f, ctx, index: payload + stray)
    res = nn_run(
        ["--load-by-name", "m", "--print-output", "0", str(ttype)], fake, tmp_path, data
    )
    assert res.code == 0, res.stderr
    parse = float if ttype <= 2 else int
    printed = [parse(v) for v in res.stdout.split()]
    assert struct.pack(f"<{len(printed)}{fmt}", *printed) == payload  # exact round trip
    assert res.stdout.count("\n") == 1
    if ttype != 3:
        assert "trailing byte(s) not printed" in res.stderr


def test_nn_run_output_maxbytes_and_too_large(tmp_path, data):
    fake = FakeNN(output=lambda f, ctx, index: bytes(range(40)))
    res = nn_run(
        ["--load-by-name", "m", "--output", "3", "/data/o.bin", "40"],
        fake,
        tmp_path,
        data,
    )
    assert res.code == 0, res.stderr
    assert fake.of("get_output") == [(CTX_BASE, 3, 40)]
    assert (data / "o.bin").read_bytes() == bytes(range(40))

    fake = FakeNN(output=lambda f, ctx, index: bytes(range(40)))
    res = nn_run(
        ["--load-by-name", "m", "--output", "0", "/data/o2.bin", "39"],
        fake,
        tmp_path,
        data,
    )
    assert res.code == 64 + 7
    assert res.stderr == "nn-run: get_output failed: errno 7\n"
    assert not (data / "o2.bin").exists()


def test_nn_run_empty_output(tmp_path, data):
    fake = FakeNN(output=lambda f, ctx, index: b"")
    res = nn_run(
        ["--load-by-name", "m", "--output", "0", "/data/e.bin"], fake, tmp_path, data
    )
    assert res.code == 0, res.stderr
    assert (data / "e.bin").read_bytes() == b""


@pytest.mark.parametrize(
    ("failing", "errno", "args"),
    [
        ("load", 2, ["--load", "9", "0", "/data/m"]),
        ("load_by_name", 8, ["--load-by-name", "nope"]),
        ("load_by_name_with_config", 1, ["--load-by-name-config", "m", "{}"]),
        ("init_execution_context", 4, ["--load-by-name", "m"]),
        ("set_input", 1, ["--load-by-name", "m", "--input", "0", "1", "1", "/data/m"]),
        ("compute", 5, ["--load-by-name", "m"]),
        ("get_output", 6, ["--load-by-name", "m", "--output", "0", "/data/o"]),
        ("finalize_execution_context", 1, ["--load-by-name", "m", "--unload"]),
        ("unload", 1, ["--load-by-name", "m", "--unload"]),
    ],
)
def test_nn_run_errno_exit_status(tmp_path, data, failing, errno, args):
    (data / "m").write_bytes(b"1234")
    fake = FakeNN(fail={failing: errno})
    res = nn_run(args, fake, tmp_path, data)
    assert res.code == 64 + errno
    assert res.stderr == f"nn-run: {failing} failed: errno {errno}\n"
    assert fake.names()[-1] == failing + ":failed"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--bogus"],
        ["--load", "0", "0"],
        ["--load-by-name", "a", "--load-by-name", "b"],
        ["--load-by-name", "a", "--input", "0", "1", "1x0x", "/data/m"],
        ["--load-by-name", "a", "--input", "0", "1", "2xa", "/data/m"],
        ["--load-by-name", "a", "--print-output", "0", "6"],
        ["--load-by-name", "a", "--repeat", "-1"],
        ["--load", "x", "0", "/data/m"],
    ],
)
def test_nn_run_usage_errors(tmp_path, data, args):
    fake = FakeNN()
    res = nn_run(args, fake, tmp_path, data)
    assert res.code == 2
    assert "usage: nn-run" in res.stderr
    assert fake.calls == []


def test_nn_run_missing_file(tmp_path, data):
    fake = FakeNN()
    res = nn_run(["--load", "1", "0", "/data/missing.onnx"], fake, tmp_path, data)
    assert res.code == 1
    assert "nn-run: cannot open /data/missing.onnx" in res.stderr
    assert fake.calls == []


# ---- digits -------------------------------------------------------------------------


def pgm(pixels: list[int], header: bytes = b"P5\n8 8\n16\n") -> bytes:
    assert len(pixels) == 64
    return header + bytes(pixels)


def first_pixel_classifier(fake: FakeNN, ctx: int, index: int) -> bytes:
    """Predicts the class given by the first pixel (value * 16), to prove data flows through."""
    (first,) = struct.unpack_from("<f", fake.inputs[ctx][0].data)
    scores = [0.0] * 10
    scores[round(first * 16)] = 1.0
    return struct.pack("<10f", *scores)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    (d / "0002-3.pgm").write_bytes(pgm([3] + [16] * 63))
    (d / "0001-7.pgm").write_bytes(
        pgm([7, *list(range(63))], header=b"P5 # comment\n# more\r\n8\t8 16 ")
    )
    (d / "0003-5.pgm").write_bytes(pgm([4] + [0] * 63))
    (d / "notes.txt").write_text("not an image")
    return d


def test_digits_by_name(tmp_path, images):
    fake = FakeNN(output=first_pixel_classifier)
    res = run_guest(DIGITS, [], fake, tmp_path, {"/images": images})
    assert res.code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[:3] == [
        "0001-7.pgm  predicted 7  label 7  ok",
        "0002-3.pgm  predicted 3  label 3  ok",
        "0003-5.pgm  predicted 4  label 5  WRONG",
    ]
    assert len(lines) == 4
    assert lines[3].startswith("images: 3  correct: 2/3  accuracy: 66.67%  mean time: ")
    assert lines[3].endswith(" ms/image")
    assert fake.of("load_by_name") == [("digits",)]
    assert fake.of("init_execution_context") == [(GRAPH_BASE,)]
    sets = fake.of("set_input")
    assert len(sets) == 3
    for ctx, index, tensor in sets:
        assert (ctx, index, tensor.dims, tensor.type, tensor.pad) == (
            CTX_BASE,
            0,
            [1, 64],
            1,
            b"\0\0\0",
        )
        assert len(tensor.data) == 256
    values = struct.unpack("<64f", sets[0][2].data)
    assert values == tuple([7 / 16] + [min(v, 16) / 16 for v in range(63)])
    assert fake.of("get_output") == [(CTX_BASE, 0, 40)] * 3
    assert fake.names().count("compute") == 3


def test_digits_quiet_model_name_and_images_option(tmp_path, images):
    fake = FakeNN(output=first_pixel_classifier)
    res = run_guest(
        DIGITS,
        ["--quiet", "--model-name", "mnist8", "--images", "/imgs"],
        fake,
        tmp_path,
        {"/imgs": images},
    )
    assert res.code == 0, res.stderr
    assert len(res.stdout.splitlines()) == 1
    assert res.stdout.startswith("images: 3  correct: 2/3  accuracy: 66.67%")
    assert fake.of("load_by_name") == [("mnist8",)]


def test_digits_model_files(tmp_path, images, data):
    (data / "digits.xml").write_bytes(b"<net/>")
    (data / "digits.bin").write_bytes(b"\x00\x01weights")
    fake = FakeNN(output=first_pixel_classifier)
    res = run_guest(
        DIGITS,
        [
            "--quiet",
            "--model-file",
            "/data/digits.xml,/data/digits.bin",
            "--encoding",
            "0",
        ],
        fake,
        tmp_path,
        {"/images": images, "/data": data},
    )
    assert res.code == 0, res.stderr
    assert fake.of("load") == [([b"<net/>", b"\x00\x01weights"], 0, 0)]
    assert fake.of("load_by_name") == []


def test_digits_errors(tmp_path, images):
    fake = FakeNN(fail={"load_by_name": 8})
    res = run_guest(DIGITS, [], fake, tmp_path, {"/images": images})
    assert res.code == 72
    assert res.stderr == "digits: load_by_name failed: errno 8\n"

    fake = FakeNN(output=lambda f, ctx, index: struct.pack("<11f", *range(11)))
    res = run_guest(DIGITS, [], fake, tmp_path, {"/images": images})
    assert res.code == 64 + 7  # the fake reports too_large for a 44-byte output
    assert "digits: get_output failed: errno 7" in res.stderr

    fake = FakeNN(output=lambda f, ctx, index: struct.pack("<9f", *range(9)))
    res = run_guest(DIGITS, [], fake, tmp_path, {"/images": images})
    assert res.code == 1
    assert "get_output returned 36 bytes, expected 40" in res.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    fake = FakeNN()
    res = run_guest(DIGITS, [], fake, tmp_path, {"/images": empty})
    assert res.code == 1
    assert "no *.pgm images found in /images" in res.stderr
    assert fake.calls == []

    res = run_guest(
        DIGITS, ["--model-file", "/images/x"], FakeNN(), tmp_path, {"/images": images}
    )
    assert res.code == 2


def test_digits_rejects_bad_pgm(tmp_path, images):
    (images / "0004-1.pgm").write_bytes(b"P5\n8 7\n16\n" + bytes(56))
    res = run_guest(
        DIGITS, [], FakeNN(output=first_pixel_classifier), tmp_path, {"/images": images}
    )
    assert res.code == 1
    assert "/images/0004-1.pgm: image is not 8x8" in res.stderr


def test_digits_unlabeled_image(tmp_path, images):
    (images / "sample.pgm").write_bytes(pgm([9] * 64))
    fake = FakeNN(output=first_pixel_classifier)
    res = run_guest(DIGITS, [], fake, tmp_path, {"/images": images})
    assert res.code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[3] == "sample.pgm  predicted 9  label ?"
    assert lines[4].startswith("images: 4  correct: 2/3  accuracy: 66.67%")
