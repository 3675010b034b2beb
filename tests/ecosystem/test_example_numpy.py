"""examples/backend-numpy, installed by pip into a fresh environment, passes its own tests: the
conformance kit, its format tests and the digits demo (same predictions as onnxruntime)."""

from __future__ import annotations

import re

from venvs import REPO, Venv

EXAMPLE = REPO / "examples" / "backend-numpy"


def test_numpy_example_passes_the_kit_and_the_digits_demo(fresh_venv: Venv) -> None:
    fresh_venv.install(EXAMPLE)
    found = fresh_venv.run("-c", "import wasinn_backend_numpy; print(wasinn_backend_numpy.__file__)", cwd=REPO)
    assert str(fresh_venv.root) in found.stdout, f"not installed in the fresh environment: {found.stdout}{found.stderr}"
    result = fresh_venv.pytest(EXAMPLE / "tests")
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "wasinn conformance kit: numpy (" in report
    passed = int(re.search(r"(\d+) passed", report).group(1))  # type: ignore[union-attr]
    assert passed >= 50, report[-3000:]
    assert " failed" not in report and " error" not in report
