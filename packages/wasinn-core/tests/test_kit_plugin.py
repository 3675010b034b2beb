"""wasinn's pytest plugin (entry point ``pytest11: wasinn``) is loaded in every pytest run where
wasinn-core is installed: it must stay cheap and add no tests by itself."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import numpy as np
import pytest

import wasinn.testing
from wasinn import ErrorCode, TensorType
from wasinn.testing import KitHarness, expect_error, expect_ok
from wasinn_test_backends import affine_model

pytest_plugins = ["pytester"]
#: Inner pytest sessions run in this process: without faulthandler, whose teardown would put the
#: default SIGILL/SIGSEGV handlers back over wasmtime's trap handlers (later traps would kill us).
INNER = ("-p", "no:cacheprovider", "-p", "no:faulthandler")

PROBE = r"""
import json, sys
import pytest, wasinn
before = set(sys.modules)
import wasinn.testing.plugin
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_plugin_imports_nothing_beyond_what_pytest_and_wasinn_import() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == ["wasinn.testing", "wasinn.testing.plugin"]


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("wasinn")
    assert plugin is not None and plugin.__name__ == "wasinn.testing.plugin"


def test_no_kit_tests_unless_a_test_class_subclasses_the_kit(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="""
        from wasinn.testing import BackendConformance  # imported, not subclassed: collects nothing

        def test_one():
            pass
    """)
    result = pytester.runpytest(*INNER)
    result.assert_outcomes(passed=1)
    assert "wasinn conformance kit" not in result.stdout.str()


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers", *INNER)
    result.stdout.fnmatch_lines(["*wasinn_conformance: a test of the wasinn backend conformance kit*"])


def test_lazy_exports() -> None:
    assert set(wasinn.testing.__all__) <= set(dir(wasinn.testing))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = wasinn.testing.no_such_name  # type: ignore[attr-defined]


def test_the_wasinn_kit_fixture(wasinn_kit: Callable[..., KitHarness], monkeypatch: pytest.MonkeyPatch) -> None:
    kit = wasinn_kit("fake")
    guest = kit.guest()
    graph = expect_ok(guest.load([affine_model("f32", (1, 4))], None), "a fake model")
    context = expect_ok(guest.init_execution_context(graph))
    wrong = np.zeros((1, 5), np.float32)
    expect_error(guest.set_input(context, 0, wrong, TensorType.F32), ErrorCode.INVALID_ARGUMENT)
    with pytest.raises(AssertionError, match=r"set_input \(on purpose\): expected success, got invalid_argument "
                                             r"\(errno 1\); wasinn said: .*expects f32\[1,4\]"):
        expect_ok(guest.set_input(context, 0, wrong, TensorType.F32), "on purpose")
