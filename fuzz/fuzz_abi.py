#!/usr/bin/env python
"""Coverage-guided fuzzing of every wasi-nn import wasinn serves (atheris, i.e. libFuzzer for Python).

Each fuzz input is decoded into a guest configuration (``wasi_ephemeral_nn`` or the legacy WAMR
``wasi_nn`` module, tight or default limits) and a sequence of up to 24 ABI calls with corrupted
pointers, lengths, handles, enum values, tensor records and dims. The calls run through a real
wasm guest (a trampoline whose exports call each import unchanged) on the ``fake`` test backend,
and every oracle of ``packages/wasinn-core/tests/hostile/hostile_abi.py`` applies: a documented
errno for every call, no guest byte written outside the call's out-pointers, handle tables that
match a shadow model, no internal error, then correct inference and no leak at the end. Any
violation raises, and libFuzzer saves the input as ``crash-<sha1>``.

Run (numbers of the last long run are in docs/security.md)::

    pip install atheris
    mkdir -p /tmp/abi-corpus
    python fuzz/fuzz_abi.py /tmp/abi-corpus -max_total_time=300 -print_final_stats=1

Reproduce a saved input: ``python fuzz/fuzz_abi.py crash-<sha1>`` (or ``--explain crash-<sha1>`` to
print the decoded calls without running libFuzzer).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "packages" / "wasinn-core" / "tests" / "hostile"))

with atheris.instrument_imports(include=["wasinn"]):
    # wasinn imports its submodules lazily: import every one here, so that all are instrumented.
    import importlib
    import pkgutil

    import wasinn

    for _module in pkgutil.walk_packages(wasinn.__path__, "wasinn."):
        if not _module.name.startswith(("wasinn.testing", "wasinn.cli", "wasinn.__main__")):
            importlib.import_module(_module.name)

import wasmtime  # noqa: E402
from hostile_abi import (  # noqa: E402
    CANONICAL_MODELS,
    FAST_LIMITS,
    INTERESTING,
    LIVE,
    OK_LEN,
    OK_PTR,
    AbiHarness,
    Compute,
    Finalize,
    GetOutput,
    Grow,
    Handle,
    Infer,
    Init,
    Len,
    Load,
    LoadByName,
    Op,
    Ptr,
    SetInput,
    Trap,
    Unload,
    fake_host,
    make_linker,
    quiet_wasinn,
)

from wasinn import Limits  # noqa: E402

MODELS = list(CANONICAL_MODELS.values())
NAMES = [b"m", b"dyn", b"m\0", b"../m", b"/etc/passwd", b"M", b"", b"\xff", b"m" * 4097, b"dir/../m"]
CONFIGS = [b"{}", b'{"a": 1}', b"[]", b"null", b'{"a":', b"[" * 20000 + b"]" * 20000]
LIMITS = [FAST_LIMITS, Limits()]

ENGINE = wasmtime.Engine()
LINKER: wasmtime.Linker | None = None  # the imports find their store's state: one linker serves every host


def u32(fdp: atheris.FuzzedDataProvider) -> int:
    if fdp.ConsumeBool():
        return INTERESTING[fdp.ConsumeIntInRange(0, len(INTERESTING) - 1)]
    return fdp.ConsumeIntInRange(0, 0xFFFFFFFF)


def ptr(fdp: atheris.FuzzedDataProvider) -> Ptr:
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind <= 6:
        return OK_PTR
    if kind == 7:
        return Ptr("raw", u32(fdp))
    if kind == 8:
        return Ptr("delta", fdp.ConsumeIntInRange(-16, 16))
    return Ptr("end", fdp.ConsumeIntInRange(-8, 64))


def length(fdp: atheris.FuzzedDataProvider) -> Len:
    kind = fdp.ConsumeIntInRange(0, 8)
    if kind <= 6:
        return OK_LEN
    if kind == 7:
        return Len("raw", u32(fdp))
    return Len("delta", fdp.ConsumeIntInRange(-8, 8))


def handle(fdp: atheris.FuzzedDataProvider) -> Handle:
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind <= 3:
        return LIVE
    if kind == 4:
        return Handle("live", fdp.ConsumeIntInRange(0, 8))
    return Handle("raw", u32(fdp))


def model(fdp: atheris.FuzzedDataProvider) -> bytes:
    kind = fdp.ConsumeIntInRange(0, 4)
    base = MODELS[fdp.ConsumeIntInRange(0, len(MODELS) - 1)]
    if kind <= 1:
        return base
    if kind == 2:  # mutated: truncated, or a few bytes overwritten
        data = bytearray(base[:fdp.ConsumeIntInRange(0, len(base))])
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            if data:
                data[fdp.ConsumeIntInRange(0, len(data) - 1)] = fdp.ConsumeIntInRange(0, 255)
        return bytes(data)
    if kind == 3:
        return b"WTST" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 96))
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))


def enum_number(fdp: atheris.FuzzedDataProvider) -> int:
    return fdp.ConsumeIntInRange(0, 8) if fdp.ConsumeBool() else u32(fdp)


def operation(fdp: atheris.FuzzedDataProvider) -> Op:
    kind = fdp.ConsumeIntInRange(0, 12)
    if kind <= 1:
        builders = tuple(model(fdp) for _ in range(fdp.ConsumeIntInRange(0, 2) if kind else 1))
        if kind == 0:  # a plausible load with the odd bad argument
            return Load(builders, out=ptr(fdp))
        return Load(builders, encoding=enum_number(fdp), target=enum_number(fdp), count=length(fdp),
                    array=ptr(fdp), pointers=(ptr(fdp),), lengths=(length(fdp),), out=ptr(fdp))
    if kind == 2:
        name = NAMES[fdp.ConsumeIntInRange(0, len(NAMES) - 1)] if fdp.ConsumeBool() else fdp.ConsumeBytes(8)
        config = None if fdp.ConsumeBool() else CONFIGS[fdp.ConsumeIntInRange(0, len(CONFIGS) - 1)]
        return LoadByName(name, config, name_ptr=ptr(fdp), name_len=length(fdp), config_ptr=ptr(fdp),
                          config_len=length(fdp), out=ptr(fdp))
    if kind in (3, 4):
        return Init(handle(fdp), ptr(fdp))
    if kind in (5, 6):
        dims = None
        if fdp.ConsumeBool():
            dims = tuple(u32(fdp) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 4)
                         for _ in range(fdp.ConsumeIntInRange(0, 6)))
        type_number = None if fdp.ConsumeBool() else enum_number(fdp)
        return SetInput(handle(fdp), fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeBool() else u32(fdp), dims,
                        type_number, fdp.ConsumeIntInRange(0, 255), length(fdp), length(fdp), ptr(fdp), ptr(fdp),
                        ptr(fdp), fdp.ConsumeBytes(3))
    if kind == 7:
        return Compute(handle(fdp))
    if kind == 8:
        return GetOutput(handle(fdp), fdp.ConsumeIntInRange(0, 2), ptr(fdp), length(fdp), ptr(fdp))
    if kind == 9:
        return Unload(handle(fdp)) if fdp.ConsumeBool() else Finalize(handle(fdp))
    if kind == 10:
        return Infer(handle(fdp), fdp.ConsumeIntInRange(0, 255))
    return Trap() if kind == 11 else Grow()


def decode(data: bytes) -> tuple[bool, bool, Limits, list[Op]]:
    fdp = atheris.FuzzedDataProvider(data)
    legacy, release = fdp.ConsumeBool(), fdp.ConsumeBool()
    limits = LIMITS[fdp.ConsumeIntInRange(0, len(LIMITS) - 1)]
    ops = [operation(fdp) for _ in range(fdp.ConsumeIntInRange(1, 24))]
    return legacy, release, limits, ops


def run(data: bytes) -> None:
    global LINKER
    legacy, release, limits, ops = decode(data)
    host = fake_host(limits)
    if LINKER is None:
        LINKER = make_linker(host, ENGINE)
    with quiet_wasinn() as errors:
        harness = AbiHarness(host, ENGINE, LINKER, legacy=legacy)
        try:
            harness.run(ops)
            harness.finish(errors, release=release)
        finally:
            harness.guest.close()
        harness.close()
    host.close()


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--explain":
        legacy, release, limits, ops = decode(Path(argv[2]).read_bytes())
        print(f"legacy={legacy} release={release} limits={limits}")
        for op in ops:
            print(f"  {op}")
        run(Path(argv[2]).read_bytes())
        print("ok: no property violated")
        return
    atheris.Setup(argv, run)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
