"""llm, as a component: a text prompt to a GGUF model through wasi:nn (WIT), the reply on stdout.

The text convention of docs/components.md (WACS's, with WasmEdge's options): input ``0`` is the
UTF-8 prompt (u8), an optional input ``1`` the options as a JSON object (u8, WasmEdge's keys:
``n-predict``, ``temp``, ``json-schema``, ...); output ``0`` is the UTF-8 reply, output ``1`` the
metadata JSON (``input_tokens``, ``output_tokens``). Built by ``guests/component/build.py``.
"""

import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import errors, graph, tensor

USAGE = """usage: llm [--model-name NAME | --model-file PATH] [--options JSON] [--metadata]
           [--input NAME] [--options-input NAME] PROMPT...
  --model-name NAME     load-by-name(NAME) (default: default, WasmEdge's preload name)
  --model-file PATH     read a GGUF file and call load(..., ggml, cpu) instead
  --options JSON        send JSON as the options tensor (input 1) with every prompt
  --input NAME          the prompt tensor's name (default 0)
  --options-input NAME  the options tensor's name (default 1)
  --metadata            print output 1 (the metadata JSON) to stderr after each reply
  PROMPT...             each prompt is one compute on the same context; replies are printed
                        one after the other, with nothing in between
"""
CODES = list(errors.ErrorCode)
T = TypeVar("T")


class Failed(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"llm: {message}\n{USAGE}")
    raise Failed(2)


def check(operation: str, call: Callable[[], T]) -> T:
    try:
        return call()
    except Err as failure:
        error = failure.value
        sys.stdout.flush()
        sys.stderr.write(f"llm: {operation} failed: {error.code().name.lower().replace('_', '-')}: "
                         f"{error.data()}\n")
        raise Failed(64 + CODES.index(error.code())) from None


def text_tensor(data: bytes) -> tensor.Tensor:
    return tensor.Tensor([len(data)], tensor.TensorType.U8, data)


def main(argv: list[str]) -> None:
    model_name, model_file, options = "default", None, None
    input_name, options_name, show_metadata = "0", "1", False
    prompts: list[str] = []
    i = 0
    while i < len(argv):
        arg, has_value = argv[i], i + 1 < len(argv)
        if arg in ("--model-name", "--model-file", "--options", "--input", "--options-input") and has_value:
            value = argv[i + 1]
            i += 1
            if arg == "--model-name":
                model_name = value
            elif arg == "--model-file":
                model_file = value
            elif arg == "--options":
                options = value
            elif arg == "--input":
                input_name = value
            else:
                options_name = value
        elif arg == "--metadata":
            show_metadata = True
        elif arg in ("--help", "-h"):
            sys.stdout.write(USAGE)
            return
        elif arg.startswith("--"):
            usage_error(f"unknown or incomplete argument: {arg}")
        else:
            prompts.append(arg)
        i += 1
    if not prompts:
        usage_error("no prompt")

    if model_file is not None:
        with open(model_file, "rb") as f:
            data = f.read()
        model = check("load", lambda: graph.load([data], graph.GraphEncoding.GGML, graph.ExecutionTarget.CPU))
    else:
        model = check("load-by-name", lambda: graph.load_by_name(model_name))
    context = check("init-execution-context", model.init_execution_context)
    for prompt in prompts:
        inputs = [(input_name, text_tensor(prompt.encode("utf-8")))]
        if options is not None:
            inputs.append((options_name, text_tensor(options.encode("utf-8"))))
        outputs = check("compute", lambda: context.compute(inputs))  # noqa: B023 (called at once)
        named = {name: out for name, out in outputs}
        if "0" not in named:
            sys.stdout.flush()
            sys.stderr.write(f"llm: compute returned no output named 0 (got {sorted(named)})\n")
            raise Failed(1)
        sys.stdout.buffer.write(named["0"].data())
        sys.stdout.flush()
        if show_metadata and "1" in named:
            sys.stderr.write("llm: metadata: " + named["1"].data().decode("utf-8") + "\n")
        for out in named.values():
            out.__exit__(None, None, None)  # drop the output tensors now
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
