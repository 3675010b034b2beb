"""The conformance kit must fail subtly wrong backends, and say why.

A tiny pure-numpy backend is installed for real (a module plus a ``.dist-info`` with its entry
points, on ``sys.path``) in a pytester sandbox: one correct variant and one variant per flaw.
The kit runs against each in an inner pytest session; the correct one must pass everything,
each flawed one must fail the checks that its flaw breaks, with a message that names it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

BACKENDS = textwrap.dedent('''
    """Backends for the kit's own tests: ``Good`` keeps the contract; each other class breaks it once."""
    from __future__ import annotations

    import json

    import numpy as np

    from wasinn import (BackendInfo, Context, Decline, ErrorCode, ExecutionTarget, Graph, ModelFormat, Score,
                        TensorSpec, TensorType, WasiNnError, hookimpl)

    FORMAT = "kit-flawed"
    # i8 has no guest numbering (the kit drives it through the embedder API), bf16 only WAMR 2.1's.
    TYPES = (TensorType.F32, TensorType.I32, TensorType.I8, TensorType.BF16)
    MAGIC = b"KITF"
    LIVE: set[int] = set()


    def make_model(dtype: str, shape: tuple[int, ...]) -> bytes:
        return MAGIC + json.dumps({"dtype": dtype, "shape": list(shape)}).encode()


    class Good:
        @hookimpl
        def backend_info(self):
            return BackendInfo(runtime="numpy", runtime_version=None, formats=(ModelFormat(FORMAT),),
                               targets=(ExecutionTarget.CPU,), tensor_types=TYPES)

        @hookimpl
        def detect_format(self, builders):
            return FORMAT if len(builders) == 1 and bytes(builders[0][:4]) == MAGIC else None

        @hookimpl
        def can_handle(self, model, hw):
            if model.target is not ExecutionTarget.CPU:
                return Decline("CPU only", ErrorCode.UNSUPPORTED_OPERATION)
            return Score(50, "numpy runs kit-flawed models", device="cpu")

        @hookimpl
        def load(self, model, hw):
            if model.target is not ExecutionTarget.CPU:
                raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, "CPU only")
            try:
                spec = json.loads(model.builders[0][len(MAGIC):])
                dtype, shape = TensorType(spec["dtype"]), tuple(int(d) for d in spec["shape"])
            except (ValueError, KeyError, TypeError) as exc:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"bad model: {exc}") from None
            graph = Graph([TensorSpec("x", dtype, shape)], [TensorSpec("y", dtype, shape)], state={})
            LIVE.add(id(graph))
            return graph

        @hookimpl
        def unload(self, graph):
            LIVE.discard(id(graph))

        @hookimpl
        def init_execution_context(self, graph):
            context = Context(graph, state={"x": None, "y": None})
            LIVE.add(id(context))
            return context

        @hookimpl
        def finalize_execution_context(self, context):
            LIVE.discard(id(context))

        @hookimpl
        def set_input(self, context, index, tensor):
            spec = context.graph.inputs[index]
            self.check(spec, tensor)
            self.keep(context, tensor)
            context.state["y"] = None

        def check(self, spec, tensor):
            if tensor.dtype is not spec.dtype or tuple(tensor.shape) != spec.shape:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"expects {spec.describe()}")

        def keep(self, context, tensor):
            context.state["x"] = tensor.numpy().copy()

        def input_of(self, context):
            return context.state["x"]

        @hookimpl
        def compute(self, context):
            x = self.input_of(context)
            if x is None:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "input 0 is not set")
            context.state["y"] = add_one(x, context.graph.inputs[0].dtype)

        @hookimpl
        def get_output(self, context, index):
            if context.state["y"] is None:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run")
            return context.state["y"]


    def add_one(x, dtype):
        if dtype is not TensorType.BF16:
            return x + np.asarray(1, x.dtype)
        bits = ((x.astype(np.uint32) << 16).view(np.float32) + np.float32(1)).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")


    class IgnoresTarget(Good):
        """Scores and 'runs' every target, on the CPU."""

        @hookimpl
        def can_handle(self, model, hw):
            return Score(50, "runs anything anywhere")

        @hookimpl
        def load(self, model, hw):
            return Good.load(self, type(model)(model.format, model.builders), hw)


    class WrongValues(Good):
        @hookimpl
        def compute(self, context):
            Good.compute(self, context)
            context.state["y"] = context.state["y"] + np.asarray(1, context.state["y"].dtype)


    class SharedInputs(Good):
        """Keeps inputs on the graph: contexts of one graph overwrite each other's."""

        def keep(self, context, tensor):
            context.graph.state["x"] = tensor.numpy().copy()

        def input_of(self, context):
            return context.graph.state.get("x")


    class KeepsView(Good):
        """Keeps the zero-copy view of guest memory past set_input."""

        def keep(self, context, tensor):
            context.state["x"] = tensor.numpy()


    class NoChecks(Good):
        """Takes any tensor of the right byte length."""

        def check(self, spec, tensor):
            pass

        def keep(self, context, tensor):
            context.state["x"] = np.frombuffer(bytes(tensor.data), spec_dtype(context)).reshape(-1)[:6].reshape(2, 3)


    def spec_dtype(context):
        return context.graph.inputs[0].dtype.numpy_dtype


    class Leaky(Good):
        @hookimpl
        def unload(self, graph):
            pass


    class GreedyDetect(Good):
        @hookimpl
        def detect_format(self, builders):
            return FORMAT  # claims every model it is shown
''')

HEAVY = textwrap.dedent('''
    import kitflawed_heavy_runtime  # noqa: F401 - imported at module level, as a careless backend would

    from kitflawed import Good as Heavy  # noqa: F401
''')

ENTRY_POINTS = {
    "kf-good": "kitflawed:Good",
    "kf-ignores-target": "kitflawed:IgnoresTarget",
    "kf-wrong-values": "kitflawed:WrongValues",
    "kf-shared-inputs": "kitflawed:SharedInputs",
    "kf-keeps-view": "kitflawed:KeepsView",
    "kf-no-checks": "kitflawed:NoChecks",
    "kf-leaky": "kitflawed:Leaky",
    "kf-greedy-detect": "kitflawed:GreedyDetect",
    "kf-heavy": "kitflawed_heavy:Heavy",
}

# class name, entry point, the kit tests its flaw must fail, and words the failure must contain
FLAWS = [
    ("TestIgnoresTarget", "kf-ignores-target", ["test_declines_unclaimed_target[gpu]",
                                                "test_declines_unclaimed_target[tpu]"],
     "expected unsupported_operation, got success"),
    ("TestWrongValues", "kf-wrong-values", ["test_five_operations[f32]", "test_five_operations[i32]"],
     "values differ"),
    ("TestSharedInputs", "kf-shared-inputs", ["test_several_contexts_on_one_graph",
                                              "test_threads_share_a_named_graph"], "values differ"),
    ("TestKeepsView", "kf-keeps-view", ["test_input_is_copied_during_set_input"], "copy it"),
    ("TestNoChecks", "kf-no-checks", ["test_wrong_input_type", "test_wrong_input_shape"],
     "expected invalid_argument, got success"),
    ("TestLeaky", "kf-leaky", ["test_unload_and_finalize_release", "test_store_close_releases_everything"],
     "the backend leaks"),
    ("TestGreedyDetect", "kf-greedy-detect", ["test_detect_format_is_safe"], "detect_format claimed"),
    ("TestHeavy", "kf-heavy", ["test_import_is_light"], "imported kitflawed_heavy_runtime"),
]

TEST_MODULE = textwrap.dedent('''
    from wasinn import TensorType
    from wasinn.testing import BackendConformance

    import kitflawed


    class Kit(BackendConformance):
        tensor_types = kitflawed.TYPES
        heavy_modules = ("kitflawed_heavy_runtime",)
        threads = 3
        iterations = 3

        def make_model(self, dtype, shape):
            return [kitflawed.make_model(dtype.value, shape)]

        def live_objects(self):
            return len(kitflawed.LIVE)


    class TestGood(Kit):
        backend = "kf-good"
''') + "".join(f"\n\nclass {cls}(Kit):\n    backend = {name!r}\n" for cls, name, _, _ in FLAWS)


def install(site: Path) -> None:
    """Install the backends the way pip would: modules plus a dist-info with entry points."""
    (site / "kitflawed.py").write_text(BACKENDS)
    (site / "kitflawed_heavy.py").write_text(HEAVY)
    (site / "kitflawed_heavy_runtime.py").write_text('"""Stands for a runtime that takes seconds to import."""\n')
    dist = site / "kitflawed-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kitflawed\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in ENTRY_POINTS.items())
    (dist / "entry_points.txt").write_text(f"[wasinn.backends]\n{lines}")


def test_the_kit_passes_a_correct_backend_and_fails_each_flaw(pytester: pytest.Pytester) -> None:
    site = pytester.mkdir("site")
    install(site)
    pytester.syspathinsert(site)
    pytester.makepyfile(test_flaws=TEST_MODULE)
    selected = ["test_flaws.py::TestGood"] + [f"test_flaws.py::{cls}::{test}" for cls, _, tests, _ in FLAWS
                                              for test in tests]
    # In-process: no faulthandler in the inner session, whose teardown would reinstall the default
    # SIGILL/SIGSEGV handlers over wasmtime's trap handlers in this process.
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:faulthandler", *selected)
    reports = {r.nodeid.split("::", 1)[1]: r for r in result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
               if r.when == "call" or (r.when == "setup" and not r.passed)}

    good = {nodeid: r.outcome for nodeid, r in reports.items() if nodeid.startswith("TestGood::")}
    assert len(good) >= 30, f"the kit ran only {len(good)} tests against the correct backend"
    assert all(state in ("passed", "skipped") for state in good.values()), \
        {k: v for k, v in good.items() if v not in ("passed", "skipped")}
    for dtype in ("f32", "i32", "i8", "bf16"):  # i8 through the embedder API, bf16 through a WAMR 2.1 guest
        assert good[f"TestGood::test_five_operations[{dtype}]"] == "passed"

    for cls, name, tests, words in FLAWS:
        for test in tests:
            report = reports.get(f"{cls}::{test}")
            assert report is not None, f"{cls}::{test} did not run"
            assert report.failed, f"the kit passed backend {name} on {test}: the flaw went unnoticed"
            text = str(report.longrepr)
            assert words in text, f"{cls}::{test} failed without saying {words!r}:\n{text[-3000:]}"
