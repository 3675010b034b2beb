#!/usr/bin/env python3
"""Rebuild the wasinn test/demo guests (C -> wasm32-wasi) reproducibly.

    python guests/build.py            # rebuild guests/*/*.wasm in place
    python guests/build.py --check    # rebuild into a temp dir, compare with
                                      # the committed .wasm files (exit 1 on any
                                      # difference)
    python guests/build.py --out DIR  # write the .wasm files under DIR instead

Toolchain: clang + wasm-ld with a wasm32-wasi libc.  On Debian/Ubuntu:
``apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`` (the Debian
wasi-libc package uses the multiarch layout /usr/include/wasm32-wasi and
/usr/lib/wasm32-wasi, which clang finds without --sysroot).  A wasi-sdk style
sysroot is used instead when WASI_SYSROOT is set or /usr/share/wasi-sysroot
exists.  CC overrides the compiler (default: clang).

Byte-identical output is only expected with the pinned toolchain
(PINNED_CLANG below, with Debian's wasi-libc 0.0~git20220510); other compiler
or libc versions produce different (but working) modules.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GUESTS_DIR = Path(__file__).resolve().parent

# First line of `clang --version` of the toolchain that built the committed
# .wasm files.
PINNED_CLANG = "Debian clang version 14.0.6"


@dataclass(frozen=True)
class Guest:
    name: str
    sources: tuple[str, ...]  # relative to guests/
    output: str  # relative to guests/ (or to --out)


GUESTS = (
    Guest("nn-run", ("nn-run/nn_run.c",), "nn-run/nn-run.wasm"),
    Guest("digits", ("digits/digits.c",), "digits/digits.wasm"),
    Guest("llm-chat", ("llm-chat/llm_chat.c",), "llm-chat/llm-chat.wasm"),
    Guest("whisper", ("whisper/whisper.c",), "whisper/whisper.wasm"),
)

# Fixed flags.  Sources are passed as paths relative to guests/ (clang runs
# with cwd=guests/), and -ffile-prefix-map guards against anything absolute
# leaking in; there is no debug info and the linker strips names/custom
# sections.
COMMON_FLAGS = (
    "--target=wasm32-wasi",
    "-O2",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-g0",
    "-ffile-prefix-map=" + str(GUESTS_DIR) + "=.",
    "-Iinclude",
    "-Wl,--strip-all",
)


def cc() -> str:
    return os.environ.get("CC", "clang")


def sysroot_flags() -> list[str]:
    root = os.environ.get("WASI_SYSROOT")
    if root:
        return ["--sysroot=" + root]
    if Path("/usr/share/wasi-sysroot/include").is_dir():
        return ["--sysroot=/usr/share/wasi-sysroot"]
    return []  # Debian multiarch layout: found by clang's default search


def compile_command(guest: Guest, output: Path) -> list[str]:
    return [cc(), *COMMON_FLAGS, *sysroot_flags(), *guest.sources, "-o", str(output)]


def clang_version() -> str | None:
    """First line of `clang --version`, or None when clang is missing."""
    try:
        res = subprocess.run(
            [cc(), "--version"], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if res.returncode != 0 or not res.stdout:
        return None
    return res.stdout.splitlines()[0].strip()


def toolchain_problem() -> str | None:
    """None when a wasm32-wasi build works here, else a reason why not."""
    if shutil.which(cc()) is None:
        return f"compiler {cc()!r} not found"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(
            '#include <stdio.h>\n#include <dirent.h>\nint main(void){puts("x");return 0;}\n'
        )
        cmd = [
            cc(),
            "--target=wasm32-wasi",
            *sysroot_flags(),
            str(src),
            "-o",
            str(Path(tmp) / "p.wasm"),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [
                "(no output)"
            ]
            return (
                "wasm32-wasi toolchain not usable (clang, lld, wasi-libc, libclang-rt wasm32): "
                + tail[0]
            )
    return None


def build_all(out_dir: Path, verbose: bool = True) -> list[Path]:
    """Build every guest under out_dir (same relative layout); return outputs."""
    outputs = []
    for guest in GUESTS:
        output = (out_dir / guest.output).resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        cmd = compile_command(guest, output)
        if verbose:
            print(f"building {guest.name}: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, cwd=GUESTS_DIR, check=True)
        output.chmod(0o644)  # a module, not an executable; keeps the git mode stable
        outputs.append(output)
    return outputs


def check() -> int:
    """Rebuild into a temp dir and compare with the committed files."""
    differ = 0
    with tempfile.TemporaryDirectory() as tmp:
        build_all(Path(tmp))
        for guest in GUESTS:
            new = (Path(tmp) / guest.output).read_bytes()
            committed_path = GUESTS_DIR / guest.output
            committed = committed_path.read_bytes() if committed_path.exists() else None
            if committed == new:
                print(f"ok       {guest.output} ({len(new)} bytes)")
            else:
                differ += 1
                have = "missing" if committed is None else f"{len(committed)} bytes"
                print(
                    f"DIFFERS  {guest.output} (committed {have}, rebuilt {len(new)} bytes)"
                )
    if differ:
        version = clang_version()
        print(
            f"{differ} guest(s) differ; toolchain here: {version!r}, pinned: {PINNED_CLANG!r}"
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = ap.add_mutually_exclusive_group()
    group.add_argument(
        "--check", action="store_true", help="rebuild into a temp dir and compare"
    )
    group.add_argument("--out", type=Path, help="output directory (default: in place)")
    args = ap.parse_args(argv)

    problem = toolchain_problem()
    if problem:
        print(f"build.py: {problem}", file=sys.stderr)
        return 2
    version = clang_version()
    print(f"toolchain: {version}")
    if version != PINNED_CLANG:
        print(
            f"note: pinned toolchain is {PINNED_CLANG!r}; output may differ from the committed files"
        )
    if args.check:
        return check()
    build_all(args.out if args.out else GUESTS_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
