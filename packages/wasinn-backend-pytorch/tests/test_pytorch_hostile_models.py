"""Hostile guest archives (issue 26, rows 1 and 2): code that torch would run while loading, or
computing, a guest's TorchScript archive or ``.pt2``.

Every payload would leave a mark if it ran: a file in a watched folder, or a token on the host's
stdout. Each is handed to ``load`` by a real wasm guest (``TrampolineGuest``) of a ``WasiNnHost()``
found through entry points (the default ranking), once with the default limits (the core refuses
code-bearing formats from guests) and once with ``Limits(allow_guest_code=True)`` (the backend's
whitelists are then the only defence). Checked each time: the errno, no mark, no file written or
touched, and a log line that says why.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch_models import AddOne, exported, rezip

import wasinn
from wasinn import Limits
from wasinn.testing import TrampolineGuest
from wasinn.testing.guest import ERRNO
from wasinn_backend_pytorch import safety

TOKEN = "WASINN-PWNED-TOKEN"  # what a payload that reaches the host's stdout prints


@dataclass(frozen=True)
class Payload:
    label: str
    #: The archive, given the marker file a payload would create.
    build: Callable[[Path], bytes]
    #: Whether the payload runs when torch itself loads the archive (and calls forward); the others
    #: torch's own compiler or parser refuses too: they stay as guards against a looser whitelist.
    runs_on_torch: bool = True


# --- TorchScript --------------------------------------------------------------------------------------

# What TorchScript prints for a module that saves its state with __getstate__/__setstate__ (a
# ``weight`` tensor and ``training``); the payload goes into __setstate__, which torch.jit.load runs.
_STATEFUL = '''class {cls}(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  weight : Tensor
  def forward(self: {qual}.{cls},
    x: Tensor) -> Tensor:
{forward}
  def __getstate__(self: {qual}.{cls}) -> Tuple[Tensor, bool]:
    weight = self.weight
    training = self.training
    return (weight, training)
  def __setstate__(self: {qual}.{cls},
    state: Tuple[Tensor, bool]) -> NoneType:
    self.weight = (state)[0]
    self.training = (state)[1]
{setstate}
    return None
{functions}'''

# A plain module (no __setstate__): the payload runs in forward, at compute.
_PLAIN = '''class {cls}(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  def forward(self: {qual}.{cls},
    x: Tensor) -> Tensor:
{forward}
{functions}'''


class _Stateful(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.zeros(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight

    @torch.jit.export
    def __getstate__(self) -> tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[torch.Tensor, bool]) -> None:
        self.weight = state[0]
        self.training = state[1]


class _Plain(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


_BASES: dict[str, bytes] = {}


def _scripted(kind: str) -> bytes:
    if kind not in _BASES:
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script((_Stateful() if kind == "stateful" else _Plain()).eval()), buffer)
        _BASES[kind] = buffer.getvalue()
    return _BASES[kind]


def _torchscript_with(template: str, kind: str, **parts: str) -> bytes:
    """A real scripted archive whose code is replaced by ``template`` (debug info dropped): the
    template's {qual} and {cls} are the module's qualified name and class, as its pickle names them."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(_scripted(kind))) as base, zipfile.ZipFile(out, "w") as archive:
        code = next(n for n in base.namelist() if n.endswith(".py"))
        qual = code.split("/code/", 1)[1].removesuffix(".py").replace("/", ".")
        cls = base.read(code).decode().split("class ", 1)[1].split("(", 1)[0]
        source = template.format(qual=qual, cls=cls, **{k: v.replace("{qual}", qual) for k, v in parts.items()})
        for name in base.namelist():
            if not name.endswith(".debug_pkl"):
                archive.writestr(name, source.encode() if name == code else base.read(name))
    return out.getvalue()


def _while_loading(body: str) -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        return _torchscript_with(_STATEFUL, "stateful",
                                 forward="    weight = self.weight\n    return torch.add(x, weight)",
                                 setstate=body.format(m=marker, w="self.weight", token=TOKEN), functions="")
    return build


def _in_forward(body: str, functions: str = "") -> Callable[[Path], bytes]:
    def build(marker: Path) -> bytes:
        return _torchscript_with(_PLAIN, "plain", forward=body.format(m=marker, w="x", token=TOKEN) + "\n    return x",
                                 functions=functions.format(m=marker, token=TOKEN))
    return build


# Spellings of "write a host file / print to the host's stdout" that beat a source regex such as
# ``\bsave\s*\(`` (the old check). Each {m} is the marker path, {w} a tensor.
_SPELLINGS = {
    "comment inside the parentheses": '    _0 = (torch.save  # x\n      ({w}, "{m}"))',
    "comment after the open parenthesis": '    torch.save(  # x\n      {w}, "{m}")',
    "line continuation": '    torch.save \\\n      ({w}, "{m}")',
    "aliased to a variable": '    f = torch.save\n    f({w}, "{m}")',
    "through ops.aten": '    _0 = (ops.aten.save  # x\n      ({w}, "{m}"))',
    # (used in place, so that TorchScript's dead-code elimination keeps it)
    "from_file creates the file it maps": '    _0 = torch.add_({w}, (torch.from_file  # x\n      ("{m}", True, 2)))',
    "print with a comment": '    _0 = (print  # x\n      ("{token}"))',
    "print aliased": '    p = print\n    p("{token}")',
    # A local bound on one branch only is unbound on the other, where TorchScript resolves the name
    # as its builtin.
    "print bound on one branch only": '    if torch.gt(torch.dim({w}), 100):\n      print = {w}\n    print("{token}")',
}
# Spellings TorchScript itself cannot compile (Python tricks): refused all the same.
_NOT_TORCHSCRIPT = {
    "__import__": '    __import__("os").system("touch {m}")',
    "string-built getattr": '    getattr(torch, "sa" + "ve")({w}, "{m}")',
    "lambda": '    (lambda: torch.save({w}, "{m}"))()',
    "builtins via __class__.__mro__": '    _0 = {w}.__class__.__mro__[-1].__subclasses__()',
    "unicode identifier": '    torch.s\uff41ve({w}, "{m}")',
    "math namespace": '    _0 = (math.save  # x\n      ({w}, "{m}"))',
}

TORCHSCRIPT_PAYLOADS = [
    *(Payload(f"__setstate__: {label}", _while_loading(body)) for label, body in _SPELLINGS.items()),
    *(Payload(f"forward: {label}", _in_forward(body)) for label, body in _SPELLINGS.items()),
    Payload("forward calls a function of the archive that saves", _in_forward(
        "    _1 = {{qual}}.leak({w})",
        "def leak(t: Tensor) -> Tensor:\n  _0 = (torch.save  # x\n    (t, \"{m}\"))\n  return t\n")),
    *(Payload(f"__setstate__: {label}", _while_loading(body), runs_on_torch=False)
      for label, body in _NOT_TORCHSCRIPT.items()),
]


# --- torch.export ---------------------------------------------------------------------------------------

_EXPORT_BASE: list[bytes] = []


def _export_base() -> bytes:
    if not _EXPORT_BASE:
        _EXPORT_BASE.append(exported(AddOne(), torch.zeros(2)))
    return _EXPORT_BASE[0]


def _model_json(data: bytes) -> dict[str, object]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        name = next(n for n in archive.namelist() if n.endswith("models/model.json"))
        document: dict[str, object] = json.loads(archive.read(name))
    return document


def _with_program(change: Callable[[dict[str, object]], None]) -> bytes:
    base = _export_base()
    program = _model_json(base)
    change(program)
    name = next(n for n in zipfile.ZipFile(io.BytesIO(base)).namelist() if n.endswith("models/model.json"))
    return rezip(base, {name: json.dumps(program).encode()})


def _symbolic_size(expression: str) -> Callable[[Path], bytes]:
    """The input's first size as a symbolic expression (torch.export.load sympifies it)."""
    def build(marker: Path) -> bytes:
        text = expression.format(m=marker)

        def change(program: dict[str, object]) -> None:
            graph = program["graph_module"]["graph"]  # type: ignore[index]
            value = next(iter(graph["tensor_values"].values()))
            value["sizes"][0] = {"as_expr": {"expr_str": text, "hint": {"as_int": 2}}}
        return _with_program(change)
    return build


_EXPRESSIONS = {
    "__import__ (the review's)": "__import__('os').system('touch {m}') + s0",
    "attribute access": "sympify.__globals__['__builtins__']['__import__']('os').system('touch {m}') + s0",
    "a lambda": "(lambda: __import__('os').system('touch {m}'))() + s0",
    "eval": "eval(\"__import__('os').system('touch {m}')\") + s0",
    "a newline inside parentheses": "(s0 +\n __import__('os').system('touch {m}'))",
    "tabs and spaces": "s0\t+  __import__ ( 'os' ) . system ( 'touch {m}' )",
    "names built from strings": "getattr(__import__('o'+'s'), 'sys'+'tem')('touch {m}') + s0",
    "inside torch's own srepr form": "Add(Symbol('s0', positive=True, integer=True), "
                                     "Integer(__import__('os').system('touch {m}')))",
}


def _aoti_library(marker: Path) -> bytes:
    """An ELF shared library whose constructor creates ``marker`` (what dlopen would run)."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler to build the AOTInductor payload")
    source = marker.parent / "payload.c"
    library = marker.parent.parent / f"{marker.parent.name}-payload.so"  # outside the watched folder
    source.write_text('#include <stdio.h>\n__attribute__((constructor)) static void run(void) '
                      f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n')
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    source.unlink()
    return library.read_bytes()


def _aoti(marker: Path) -> bytes:
    base = _export_base()
    root = zipfile.ZipFile(io.BytesIO(base)).namelist()[0].split("/", 1)[0]
    return rezip(base, {f"{root}/data/aotinductor/model/model.wrapper.so": _aoti_library(marker),
                        f"{root}/data/aotinductor/model/model.wrapper_metadata.json": b'{"AOTI_DEVICE_KEY": "cpu"}'})


EXPORT_PAYLOADS = [
    *(Payload(f"expr_str: {label}", _symbolic_size(text)) for label, text in _EXPRESSIONS.items()),
    Payload("expr_str: fullwidth unicode __import__", _symbolic_size("__\uff49mport__('os').system('touch {m}') + s0"),
            runs_on_torch=False),
    Payload("an AOTInductor library (dlopen'ed by torch.export.load)", _aoti),
]


# --- the checks -----------------------------------------------------------------------------------------


class Watch:
    """Every file under a folder with its size and modification time: nothing may appear or change."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(self.folder)): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in self.folder.rglob("*")}

    def changes(self) -> dict[str, object]:
        after = self.snapshot()
        return {name: after.get(name) for name in set(after) | set(self.before)
                if after.get(name) != self.before.get(name)}


@pytest.fixture(params=["default limits", "allow_guest_code"])
def limits(request: pytest.FixtureRequest) -> Limits:
    return Limits(allow_guest_code=request.param == "allow_guest_code")


@pytest.fixture
def guest(limits: Limits) -> Iterator[TrampolineGuest]:
    host = wasinn.WasiNnHost(limits=limits)  # entry-point discovery: the default ranking
    assert host.registry.get("pytorch") is not None
    trampoline = TrampolineGuest(host)
    yield trampoline
    trampoline.close()
    host.close()


def _refused(guest: TrampolineGuest, model: bytes, encoding: str, marker: Path, watch: Watch,
             caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    with caplog.at_level(logging.DEBUG, logger="wasinn"):
        call = guest.load([model], encoding)
        if call.ok and call.value is not None:  # it loaded: a payload in forward would now run
            context = guest.init_execution_context(call.value)
            if context.ok and context.value is not None:
                guest.set_input(context.value, 0, np.zeros(2, np.float32))
                guest.compute(context.value)
    out, err = capfd.readouterr()
    sys.stdout.write(out)
    sys.stderr.write(err)
    assert not marker.exists(), "the payload ran: it created its marker"
    assert TOKEN not in out and TOKEN not in err, "the payload ran: it printed to the host's stdout"
    assert watch.changes() == {}, "a file was written or touched"
    assert call.errno == ERRNO["invalid_argument"], f"load answered errno {call.errno}"
    if guest.host.limits.allow_guest_code:
        # In-process the backend logs "pytorch: refused ..."; in an isolated worker (the default) its
        # log stays there, and the host's line for the guest's errno carries the backend's reason.
        refusals = [r.getMessage() for r in caplog.records if "pytorch: refused" in r.getMessage() or (
            "load -> invalid_argument" in r.getMessage() and ": refused " in r.getMessage())]
        assert refusals, f"no log line says why: {caplog.text[-2000:]}"
    else:
        assert "Limits(allow_guest_code=True)" in caplog.text and "would run code" in caplog.text, caplog.text


@pytest.mark.parametrize("payload", TORCHSCRIPT_PAYLOADS, ids=lambda p: p.label)
def test_a_guest_torchscript_archive_never_runs_its_code(payload: Payload, guest: TrampolineGuest, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture,
                                                        capfd: pytest.CaptureFixture[str]) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    marker = watched / "pwned"
    model = payload.build(marker)
    _refused(guest, model, "pytorch", marker, Watch(watched), caplog, capfd)


@pytest.mark.parametrize("payload", EXPORT_PAYLOADS, ids=lambda p: p.label)
def test_a_guest_pt2_never_runs_its_code(payload: Payload, guest: TrampolineGuest, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    marker = watched / "pwned"
    model = payload.build(marker)
    _refused(guest, model, "autodetect", marker, Watch(watched), caplog, capfd)


# The payloads are real: given to torch directly (no wasinn check in between), the ones marked
# ``runs_on_torch`` leave their mark. Run in a child, since that is the point: they run code.
_DIRECT = """
import io, sys, torch
data = open(sys.argv[1], "rb").read()
kind = sys.argv[2]
try:
    if kind == "torchscript":
        module = torch.jit.load(io.BytesIO(data))
        module(torch.zeros(2))
    else:
        torch.export.load(io.BytesIO(data))
except Exception:
    pass
"""


@pytest.mark.parametrize("payload", [p for p in TORCHSCRIPT_PAYLOADS + EXPORT_PAYLOADS
                                     if p.runs_on_torch and "print" not in p.label],
                         ids=lambda p: p.label)
def test_the_payloads_are_real(payload: Payload, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.bin"
    path.write_bytes(payload.build(marker))
    kind = "torchscript" if payload in TORCHSCRIPT_PAYLOADS else "pt2"
    subprocess.run([sys.executable, "-c", _DIRECT, str(path), kind], capture_output=True, timeout=300, check=False)
    assert marker.exists(), "this payload does not run on torch as installed: it proves nothing"


def test_the_print_payloads_are_real(tmp_path: Path) -> None:
    for payload in TORCHSCRIPT_PAYLOADS:
        if payload.runs_on_torch and "print" in payload.label:
            path = tmp_path / "model.pt"
            path.write_bytes(payload.build(tmp_path / "unused"))
            result = subprocess.run([sys.executable, "-c", _DIRECT, str(path), "torchscript"], capture_output=True,
                                    text=True, timeout=300, check=False)
            assert TOKEN in result.stdout, payload.label


# --- the embedder's named models ----------------------------------------------------------------------


def test_an_embedders_pt2_gets_the_shape_grammar_too(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Named models are trusted, but the grammar costs nothing for real models: it applies to them."""
    watched = tmp_path / "watched"
    watched.mkdir()
    marker = watched / "pwned"
    watch = Watch(watched)
    host = wasinn.WasiNnHost()
    host.register_model("m", [_symbolic_size(_EXPRESSIONS["__import__ (the review's)"])(marker)])
    guest = TrampolineGuest(host)
    try:
        with caplog.at_level(logging.DEBUG, logger="wasinn"):
            call = guest.load_by_name("m")
        assert call.errno == ERRNO["invalid_argument"]
        assert not marker.exists() and watch.changes() == {}
        assert "outside the shape grammar" in caplog.text
    finally:
        guest.close()
        host.close()


def test_an_embedders_torchscript_is_trusted() -> None:
    """The embedder's own TorchScript is its code: a scripted module torch writes with __setstate__
    (refused from a guest) loads and runs as a named model."""
    host = wasinn.WasiNnHost()
    host.register_model("m", [_scripted("stateful")])
    guest = TrampolineGuest(host)
    try:
        call = guest.load_by_name("m")
        assert call.ok and call.value is not None
        (out,) = guest.infer(call.value, [np.ones(2, np.float32)], [(np.float32, (2,))])
        np.testing.assert_array_equal(out, np.ones(2, np.float32))
    finally:
        guest.close()
        host.close()


# --- memory ---------------------------------------------------------------------------------------------

_RSS_CHILD = """
import sys, wasinn, numpy as np
from pathlib import Path
from wasinn import Limits
from wasinn.testing import TrampolineGuest

def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")) * 1024

host = wasinn.WasiNnHost(limits=Limits(allow_guest_code=True))
guest = TrampolineGuest(host)
good = guest.load([Path(sys.argv[1]).read_bytes()], "pytorch")  # torch imported, a model loaded
assert good.ok, good
before = hwm()
answers = [guest.load([p.read_bytes()], "autodetect").errno for p in sorted(Path(sys.argv[2]).glob("*.bin"))]
print(before, hwm(), *answers)
"""


def test_refusing_every_payload_costs_little_memory(tmp_path: Path) -> None:
    """Peak RSS of a child that refuses all payloads, after it loaded one real model."""
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    count = 0
    for i, payload in enumerate(TORCHSCRIPT_PAYLOADS + EXPORT_PAYLOADS[:-1]):  # no compiler needed
        (payloads / f"{i:03}.bin").write_bytes(payload.build(tmp_path / "marks" / "pwned"))
        count += 1
    good = tmp_path / "good.pt"
    good.write_bytes(_scripted("plain"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(good), str(payloads)], capture_output=True,
                            text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    before, after, *answers = (int(v) for v in result.stdout.split())
    assert answers == [ERRNO["invalid_argument"]] * count
    assert after - before < 64 << 20, f"peak RSS grew by {(after - before) >> 20} MiB refusing {count} archives"
    assert not (tmp_path / "marks").exists()


# --- the grammar and the whitelists, directly -------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "Symbol('s0', positive=True, integer=True)", "Symbol('u3', integer=True)", "2*s69", "s0//2 + 1", "-s0 + 3",
    "Mul(Integer(2), Symbol('s0', positive=True, integer=True))", "Add(Mul(Integer(2), Symbol('u0', integer=True)), "
    "Integer(-1))", "FloorDiv(Mul(Integer(2), Symbol('s77', positive=True, integer=True)), Integer(3))",
    "Mod(Symbol('s77', positive=True, integer=True), Integer(3))", "Min(Integer(8), Symbol('s1', integer=True))",
    "Max(Integer(1), TruncToInt(Mul(Float('1.5', precision=53), ToFloat(Symbol('s53', positive=True, "
    "integer=True)))))", "Unequality(Symbol('u0', integer=True), Integer(3))",
    "StrictLessThan(Symbol('u1', integer=True), Integer(100))",
])
def test_the_grammar_accepts_what_torch_writes(text: str) -> None:
    safety.check_sym_expr(text)


@pytest.mark.parametrize("text", [
    *(t.format(m="/tmp/x") for t in _EXPRESSIONS.values()), "s0.__class__", "s0[0]", "x", "Symbol('os')",
    "Symbol('s0', evaluate=False)", "Integer(10**1000)", "Pow(s0, 2)", "Integer('1')", "Float('nan')", "s0 ** 99",
    "s0 if s0 else 1", "S.true", "Integer(99999999999999999999)", "s1234567", "", "(" * 300 + "s0" + ")" * 300,
    "s0 % 3", "s0 / 2", "s0; s1", "Symbol(*('s0',))", "Symbol('s0', **{})", "Add(s0=1)",
])
def test_the_grammar_refuses_anything_else(text: str) -> None:
    with pytest.raises(safety.UnsafeModel):
        safety.check_sym_expr(text)


@pytest.mark.parametrize("target", ["torch.ops.aten.save.default", "torch.ops.aten.from_file.default",
                                    "torch.ops.aten._print.default", "torch.ops.aten.warn.default",
                                    "torch.ops.debugprims.load_tensor.default", "torch.ops.prim.Print.default",
                                    "torch.save", "torch.load", "builtins.print", "_operator.pow",
                                    "torch.ops.higher_order.print", "torch.ops.higher_order.auto_functionalized",
                                    "#custom:op", "torch.ops.aten.add.Tensor.extra"])
def test_graph_targets_outside_the_allowlist_are_refused(target: str) -> None:
    def change(program: dict[str, object]) -> None:
        graph = program["graph_module"]["graph"]  # type: ignore[index]
        graph["nodes"][0]["target"] = target
    with pytest.raises(safety.UnsafeModel, match="not an allowed operator"):
        safety.safe_torch_export(_with_program(change))


def test_guard_code_and_sample_inputs_are_dropped() -> None:
    """torch exec()s guard code when sample inputs are present: neither reaches torch."""
    def change(program: dict[str, object]) -> None:
        program["guards_code"] = ["__import__('os').system('true')"]
    rebuilt = safety.safe_torch_export(_with_program(change))
    assert _model_json(rebuilt)["guards_code"] == []
    with zipfile.ZipFile(io.BytesIO(rebuilt)) as archive:
        assert all(archive.read(n) == b"" for n in archive.namelist() if "/sample_inputs/" in n)


def test_a_compressed_entry_may_not_declare_more_than_the_archive_holds() -> None:
    """A deflated entry of zeros: a few kB of archive that the check and torch would inflate."""
    base = _export_base()
    root = zipfile.ZipFile(io.BytesIO(base)).namelist()[0].split("/", 1)[0]
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
        target.writestr(f"{root}/extra/zeros", b"\0" * (64 << 20), compress_type=zipfile.ZIP_DEFLATED)
    assert len(out.getvalue()) < 1 << 20
    with pytest.raises(safety.UnsafeModel, match="declare"):
        safety.safe_torch_export(out.getvalue())


# Shapes of code and pickles TorchScript's printer never writes: each refused by check_torchscript
# itself (not by torch failing to compile them), with the reason in the message.
_PLAIN_FORWARD = "    return x\n"
_NOT_PRINTED = {
    "an interface base class": ("class {cls}(Interface):", "derives class"),
    "a decorator": ("  @torch.jit.export\n  def forward(", "'@' is not TorchScript's output"),
    "a module-level import": ("import os\nclass {cls}(Module):", "module-level Import"),
    "forward hooks": ("  __forward_hooks__ = [\"forward\"]\n  def forward(", "special method"),
    "a comment": ("  def forward(  # hi\n", "comment"),
    "a tab": ("  def forward(self: {qual}.{cls},\n\tx: Tensor) -> Tensor:", "control characters"),
    "a non-ASCII name": ("  def forward(self: {qual}.{cls},\n    x\u00e9: Tensor) -> Tensor:", "ASCII"),
}


@pytest.mark.parametrize("label", _NOT_PRINTED)
def test_torchscript_shapes_the_printer_never_writes_are_refused(label: str) -> None:
    replacement, words = _NOT_PRINTED[label]
    anchor = {"an interface base class": "class {cls}(Module):", "a module-level import": "class {cls}(Module):",
              "a tab": "  def forward(self: {qual}.{cls},\n    x: Tensor) -> Tensor:",
              "a non-ASCII name": "  def forward(self: {qual}.{cls},\n    x: Tensor) -> Tensor:"}.get(
        label, "  def forward(")
    template = _PLAIN.replace(anchor, replacement, 1)
    model = _torchscript_with(template, "plain", forward=_PLAIN_FORWARD.rstrip("\n"), functions="")
    with pytest.raises(safety.UnsafeModel, match=words):
        safety.check_torchscript(model, _op_names())


def test_a_torch_classes_definition_and_foreign_pickle_globals_are_refused() -> None:
    plain = _torchscript_with(_PLAIN, "plain", forward=_PLAIN_FORWARD.rstrip("\n"), functions="")
    root = zipfile.ZipFile(io.BytesIO(plain)).namelist()[0].split("/", 1)[0]
    forged = rezip(plain, {f"{root}/code/__torch__/torch/classes/quantized.py": b"class Base:\n  pass\n"})
    with pytest.raises(safety.UnsafeModel, match=r"torch\.classes"):
        safety.check_torchscript(forged, _op_names())
    import pickle
    foreign = rezip(plain, {f"{root}/data.pkl": pickle.dumps(Path("x"), protocol=2)})
    with pytest.raises(safety.UnsafeModel, match="neither a tensor helper"):
        safety.check_torchscript(foreign, _op_names())
    stack = rezip(plain, {f"{root}/constants.pkl": pickle.dumps(Path("x"), protocol=4)})
    with pytest.raises(safety.UnsafeModel, match="STACK_GLOBAL"):
        safety.check_torchscript(stack, _op_names())


# --- real models keep working ------------------------------------------------------------------------------


class _ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding="same")
        self.norm = torch.nn.BatchNorm2d(4)
        self.blocks = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Identity(),
                                          torch.nn.MaxPool2d(2))
        self.head = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm(self.conv(x)))
        y = torch.nn.functional.interpolate(y, scale_factor=2.0, mode="bilinear") + 0.5
        y = torch.nn.functional.adaptive_avg_pool2d(self.blocks(y) + 1.0, 1).flatten(1)
        return torch.softmax(self.head(self.drop(y)), dim=-1)


@torch.jit.script
class _Scale:
    def __init__(self, k: float) -> None:
        self.k = k

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.k


class _Pair(NamedTuple):
    values: torch.Tensor
    sums: torch.Tensor


class _Containers(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(3)])
        self.acts = torch.nn.ModuleDict({"gelu": torch.nn.GELU(approximate="tanh"), "silu": torch.nn.SiLU()})
        self.embed = torch.nn.Embedding(10, 8)
        self.norm = torch.nn.LayerNorm(8)
        self.label = "na\u00efve \u2713"

    def forward(self, tokens: torch.Tensor) -> _Pair:
        x = self.norm(self.embed(tokens))
        for layer in self.layers:
            x = layer(x)
        x = self.acts["gelu"](x) + self.acts["silu"](x)
        rows = [x[i].sum() for i in range(x.shape[0])]
        if self.label.startswith("na"):
            x = torch.div(x, 2.0, rounding_mode="floor")
        assert x.dim() == 3, f"expected 3 dimensions, got {x.dim()}"
        return _Pair(_Scale(0.5).apply(x), torch.stack(rows))


class _Recurrent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.gru = torch.nn.GRU(16, 8, batch_first=True)
        self.attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)
        g, _ = self.gru(h)
        a, _ = self.attention(g, g, g)
        return a


class _Dynamic(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        return x.reshape(n // 2, -1), torch.zeros(n % 3 + 1), x[: max(1, n - 1)] * 2


class _Unbacked(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = x.sum().to(torch.int64).item()
        torch._check(k >= 0)
        torch._check(k < 100)
        return x.nonzero(), torch.zeros(k)


def _save_script(module: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buffer)
    return buffer.getvalue()


def _save_trace(module: torch.nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(module.eval(), example, check_trace=False), buffer)
    return buffer.getvalue()


def _save_export(module: torch.nn.Module, example: torch.Tensor, dims: dict[int, object] | None = None) -> bytes:
    buffer = io.BytesIO()
    name = next(iter(__import__("inspect").signature(module.forward).parameters))
    shapes = {name: dims} if dims else None
    torch.export.save(torch.export.export(module.eval(), (example,), dynamic_shapes=shapes), buffer)
    return buffer.getvalue()


AUTO = torch.export.Dim.AUTO
REAL_MODELS: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[torch.nn.Module, torch.Tensor], bytes],
                             torch.Tensor]] = {
    "scripted conv net": (_ConvNet, lambda m, x: _save_script(m), torch.rand(1, 3, 8, 8)),
    "traced conv net": (_ConvNet, _save_trace, torch.rand(1, 3, 8, 8)),
    "scripted containers, NamedTuple, TorchScript class": (_Containers, lambda m, x: _save_script(m),
                                                           torch.tensor([[1, 2, 3], [4, 5, 6]])),
    "traced LSTM, GRU, multi-head attention": (_Recurrent, _save_trace, torch.rand(2, 5, 8)),
    ".pt2 conv net, dynamic batch": (_ConvNet, lambda m, x: _save_export(m, x, {0: AUTO}), torch.rand(2, 3, 8, 8)),
    ".pt2 LSTM, GRU, attention, dynamic batch and length": (
        _Recurrent, lambda m, x: _save_export(m, x, {0: AUTO, 1: AUTO}), torch.rand(2, 5, 8)),
    ".pt2 // and % of a dynamic size": (_Dynamic, lambda m, x: _save_export(m, x, {0: AUTO}), torch.rand(6, 4)),
}


@pytest.mark.parametrize("label", REAL_MODELS)
def test_real_models_pass_the_whitelists_from_a_guest(label: str) -> None:
    make, save, example = REAL_MODELS[label]
    torch.manual_seed(0)
    module = make().eval()
    model = save(module, example)
    with wasinn.WasiNnHost(limits=Limits(allow_guest_code=True)) as host:
        state = host.new_state()
        graph = state.load([model], wasinn.GraphEncoding.PYTORCH, wasinn.ExecutionTarget.CPU)
        context = state.init_execution_context(graph)
        state.set_input(context, 0, wasinn.Tensor.from_numpy(example.numpy()))
        state.compute(context)
        with torch.inference_mode():
            want = module(example)
        first = want[0] if isinstance(want, tuple) else want
        np.testing.assert_allclose(np.array(state.get_output(context, 0)), first.numpy(), rtol=1e-5, atol=1e-6)
        state.close()


def test_a_pt2_with_unbacked_sizes_and_checks_passes() -> None:
    torch._dynamo.config.capture_scalar_outputs = True
    model = _save_export(_Unbacked(), torch.ones(4, 3))
    safety.safe_torch_export(model)  # expressions with u0, StrictLessThan, ... are in the grammar


def test_scripted_multihead_attention_is_refused_from_a_guest_for_its_warnings() -> None:
    """Its scripted code calls warnings.warn (guest text on the host's stderr): trace or export it."""
    model = _save_script(torch.nn.MultiheadAttention(8, 2, batch_first=True))
    with pytest.raises(safety.UnsafeModel, match=r"torch\.warn"):
        safety.check_torchscript(model, _op_names())


def _op_names() -> frozenset[str]:
    from wasinn_backend_pytorch.backend import _op_names as names

    return names()
