"""Fresh virtual environments for the ecosystem tests: a backend is built and installed by pip from
its own pyproject.toml (entry point included), then its test suite runs in that environment.

The environment is new (``python -m venv``) and holds only the package under test; wasinn-core and
its dependencies (wasmtime, pluggy, numpy, pytest ...) come from the running environment through a
``.pth`` file, as ``--system-site-packages`` would give them for a non-virtual interpreter. pip
builds the wheel without build isolation when hatchling is importable here (fast, offline), and in
an isolated build environment otherwise (it then fetches hatchling from the configured index).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Venv:
    root: Path
    python: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS",
                            "WASINN_HARDWARE", "PYTEST_ADDOPTS")}
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = f"{self.root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def install(self, project: Path, timeout: float = 300) -> None:
        """``pip install --no-deps PROJECT`` into this environment (a real wheel build)."""
        isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
        result = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), "install", "--no-deps",
             "--disable-pip-version-check", "--no-input", *isolation, str(project)],
            capture_output=True, text=True, timeout=timeout, env=self.env(), check=False)
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        assert result.returncode == 0, f"pip install {project} failed:\n{output}"

    def run(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.python), *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=self.env(), check=False)

    def pytest(self, tests: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run("-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", *args, str(tests),
                        cwd=tests.parent, timeout=timeout)


def make_venv(root: Path) -> Venv:
    venv.create(root, with_pip=False, symlinks=os.name != "nt")
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    outer = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    lines = "".join(f"import site; site.addsitedir({path!r})\n" for path in outer)
    (Path(site) / "_wasinn_outer_environment.pth").write_text(lines)
    return Venv(root, python)
