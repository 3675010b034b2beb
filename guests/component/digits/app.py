"""digits, as a component: classifies the 8x8 demo digits through wasi:nn (WIT), like guests/digits.

Same options and output as the core-module guest (guests/digits/digits.c), plus ``--input NAME``
(the named tensor to feed; default ``0``, the first input, since the demo models name it differently
per format). Built by ``guests/component/build.py`` with componentize-py.
"""

import os
import struct
import sys
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import errors, graph, tensor

USAGE = """usage: digits [--images DIR] [--model-name NAME]
              [--model-file PATH[,PATH...] --encoding NAME [--target NAME]] [--input NAME] [--quiet]
  --images DIR          directory with NNNN-L.pgm files (default /images)
  --model-name NAME     load-by-name(NAME) (default: digits)
  --model-file PATHS    read the model file(s) and call load() instead (OpenVINO IR: xml,bin)
  --encoding NAME       graph encoding for --model-file (openvino, onnx, tensorflowlite, autodetect, ...)
  --target NAME         execution target for --model-file (default cpu)
  --input NAME          name of the input tensor (default 0: the model's first input)
  --quiet               print only the summary line
"""
CODES = list(errors.ErrorCode)
T = TypeVar("T")


class Failed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"digits: {message}\n{USAGE}")
    raise Failed(2)


def check(operation: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Err as failure:
        error = failure.value
        sys.stdout.flush()
        sys.stderr.write(f"digits: {operation} failed: {error.code().name.lower().replace('_', '-')}: "
                         f"{error.data()}\n")
        raise Failed(64 + CODES.index(error.code())) from None


def parse_pgm(raw: bytes) -> list[float]:
    """8x8 binary PGM -> 64 floats in [0, 1], or raise ValueError."""
    if raw[:2] != b"P5":
        raise ValueError("not a binary PGM (P5)")
    fields: list[int] = []
    pos = 2
    while len(fields) < 3:
        while pos < len(raw) and (raw[pos:pos + 1].isspace() or raw[pos:pos + 1] == b"#"):
            if raw[pos:pos + 1] == b"#":
                while pos < len(raw) and raw[pos:pos + 1] not in b"\r\n":
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < len(raw) and raw[pos:pos + 1].isdigit():
            pos += 1
        if pos == start:
            raise ValueError("bad PGM header")
        fields.append(int(raw[start:pos]))
    width, height, maxval = fields
    if (width, height) != (8, 8):
        raise ValueError("image is not 8x8")
    if not 0 < maxval <= 255:
        raise ValueError("unsupported maxval (must be 1..255)")
    if pos >= len(raw) or not raw[pos:pos + 1].isspace():
        raise ValueError("bad PGM header")
    pixels = raw[pos + 1:pos + 65]
    if len(pixels) < 64:
        raise ValueError("truncated pixel data")
    return [min(v, maxval) / maxval for v in pixels]


def label_of(name: str) -> int:
    stem = name[:-4]
    dash = stem.rfind("-")
    return int(stem[dash + 1]) if dash >= 0 and len(stem) - dash == 2 and stem[-1].isdigit() else -1


def main(argv: list[str]) -> None:
    images, model_name, input_name, target, quiet = "/images", "digits", "0", "cpu", False
    model_files: list[str] | None = None
    encoding: str | None = None
    i = 0
    while i < len(argv):
        arg, has_value = argv[i], i + 1 < len(argv)
        if arg in ("--images", "--model-name", "--model-file", "--encoding", "--target", "--input") and has_value:
            value = argv[i + 1]
            i += 1
            if arg == "--images":
                images = value
            elif arg == "--model-name":
                model_name = value
            elif arg == "--model-file":
                model_files = value.split(",")
            elif arg == "--encoding":
                encoding = value
            elif arg == "--target":
                target = value
            else:
                input_name = value
        elif arg == "--quiet":
            quiet = True
        elif arg in ("--help", "-h"):
            sys.stdout.write(USAGE)
            return
        else:
            usage_error(f"unknown or incomplete argument: {arg}")
        i += 1
    if model_files and encoding is None:
        usage_error("--model-file needs --encoding")
    try:
        names = sorted(n for n in os.listdir(images) if n.endswith(".pgm") and len(n) > 4)
    except OSError as exc:
        sys.stderr.write(f"digits: cannot open directory {images}: {exc.strerror}\n")
        raise Failed(1) from None
    if not names:
        sys.stderr.write(f"digits: no *.pgm images found in {images}\n")
        raise Failed(1)

    if model_files:
        builders = []
        for path in model_files:
            with open(path, "rb") as f:
                builders.append(f.read())
        try:
            enc = graph.GraphEncoding[(encoding or "").upper()]
            tgt = graph.ExecutionTarget[target.upper()]
        except KeyError:
            usage_error(f"unknown encoding or target: {encoding} {target}")
        model = check("load", lambda: graph.load(builders, enc, tgt))
    else:
        model = check("load-by-name", lambda: graph.load_by_name(model_name))
    context = check("init-execution-context", model.init_execution_context)

    correct = labeled = 0
    total_ms = 0.0
    for name in names:
        with open(os.path.join(images, name), "rb") as f:
            raw = f.read()
        try:
            pixels = parse_pgm(raw)
        except ValueError as exc:
            sys.stdout.flush()
            sys.stderr.write(f"digits: {name}: {exc}\n")
            raise Failed(1) from None
        data = struct.pack("<64f", *pixels)
        started = time.monotonic()
        inputs = [(input_name, tensor.Tensor([1, 64], tensor.TensorType.FP32, data))]
        outputs = check("compute", lambda: context.compute(inputs))  # noqa: B023 (called at once)
        total_ms += (time.monotonic() - started) * 1000
        if not outputs or len(outputs[0][1].data()) != 40:
            sys.stdout.flush()
            sys.stderr.write(f"digits: compute returned {len(outputs)} outputs, expected f32[1,10] first\n")
            raise Failed(1)
        scores = struct.unpack("<10f", outputs[0][1].data())
        for _, out in outputs:
            out.__exit__(None, None, None)  # drop the output tensors now
        predicted = max(range(10), key=lambda c: (scores[c], -c))
        label = label_of(name)
        if label >= 0:
            labeled += 1
            correct += predicted == label
        if not quiet:
            if label >= 0:
                print(f"{name}  predicted {predicted}  label {label}  {'ok' if predicted == label else 'WRONG'}")
            else:
                print(f"{name}  predicted {predicted}  label ?")
    accuracy = f"{100.0 * correct / labeled:.2f}%" if labeled else "n/a"
    print(f"images: {len(names)}  correct: {correct}/{labeled}  accuracy: {accuracy}  "
          f"mean time: {total_ms / len(names):.3f} ms/image")
    context.__exit__(None, None, None)
    model.__exit__(None, None, None)


class Run(exports.Run):
    def run(self) -> None:
        try:
            main(sys.argv[1:])
        except Failed:
            sys.stdout.flush()
            sys.stderr.flush()
            # wasi:cli/exit@0.2.0 can only say success or failure: any status but 0 is 1 to the host.
            raise Err(None) from None
        finally:
            sys.stdout.flush()
