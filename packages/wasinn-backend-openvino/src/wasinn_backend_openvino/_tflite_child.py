"""A guest's TFLite bytes are read by OpenVINO in a throwaway child process, never in the host.

OpenVINO's TFLite frontend trusts its flatbuffer: it calls ``tflite::GetModel`` without the
flatbuffers verifier and indexes the tensor and buffer vectors without bounds checks. A hostile file
can make it read outside the model: a crash at best, and at worst host memory copied into the
model's constants, which the guest then reads back through its outputs. A probe that only *tries*
the file in a child and then reads it again in the host would stop the crash but not the silent
read, so the host does not read the file at all:

1. the child reads the TFLite file (whatever the reader touches is the child's memory, which holds
   nothing but this model), saves what it read as OpenVINO IR, then compiles it on the CPU and runs
   it once on zeros (graphs from a broken flatbuffer are shapes and constants no converter writes,
   and compile or infer is where a plugin would abort);
2. the host reads that IR, OpenVINO's own format, as it reads an IR a guest hands in.

A crash, a hang or an odd exit of the child is the guest's ``invalid_argument`` (or the probe's
``runtime_error``), not the end of the host. The child is a confined worker (:mod:`wasinn.worker`,
forked from a template with OpenVINO imported): it reads the model from its stdin and writes only in
its own scratch folder, the IR's, which the host reads back.

``WASINN_OPENVINO_TFLITE_PROBE`` chooses for which models: ``untrusted`` (default: bytes from a guest's
``load``), ``always`` (also the embedder's named models) or ``never`` (OpenVINO reads every TFLite in
the host, as before). A guest cannot change it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from wasinn import ErrorCode
from wasinn.isolation import ChildProbe

PROBE_ENV = "WASINN_OPENVINO_TFLITE_PROBE"
TIMEOUT_S = 120.0

# Runs in the child, in a private folder (argv[1]): read, save as IR, compile, infer on zeros.
# Exit 0: fine; 3: OpenVINO refused the model politely (the reason is in "error"); a signal: a crash.
_SCRIPT = r"""
import os, sys
folder = sys.argv[1]
def refused(stage, exc):
    if stage == "read":  # no IR at all, not half of one
        for name in ("model.xml", "model.bin"):
            if os.path.exists(os.path.join(folder, name)):
                os.remove(os.path.join(folder, name))
    with open(os.path.join(folder, "error"), "w", encoding="utf-8") as file:
        file.write(stage + "\n" + str(exc))
    sys.exit(3)
import openvino as ov
source = os.path.join(folder, "model.tflite")
with open(source, "wb") as file:
    file.write(sys.stdin.buffer.read())
core = ov.Core()
try:
    model = core.read_model(source)
    ov.save_model(model, os.path.join(folder, "model.xml"), compress_to_fp16=False)
except Exception as exc:
    refused("read", exc)
try:
    compiled = core.compile_model(model, "CPU")
    request = compiled.create_infer_request()
    for index, port in enumerate(compiled.inputs):
        shape = port.get_partial_shape()
        dims = [1] if shape.rank.is_dynamic else [d.get_length() if d.is_static else 1 for d in shape]
        tensor = request.get_input_tensor(index)
        tensor.shape = dims
        tensor.data[...] = 0
    request.infer()
except Exception as exc:
    refused("compile", exc)
"""

# The key is the folder, new each time: the IR must be made for every load (no result is cached).
CHILD = ChildProbe(PROBE_ENV, _SCRIPT, what="TFLite model", crashes="OpenVINO's TFLite reader",
                   timeout_s=TIMEOUT_S, failure=ErrorCode.RUNTIME_ERROR, cache_size=0, preload=("openvino",))
policy = CHILD.policy
wanted = CHILD.wanted


def read_in_child(core: Any, data: bytes, memory_bytes: int | None = None) -> Any:
    """``data`` (TFLite) as an ``openvino.Model``, read by a child process and handed over as IR.

    Raises WasiNnError if the child crashes or hangs, RuntimeError (OpenVINO's message) if OpenVINO
    refused to read the file.
    """
    import openvino

    folder = Path(tempfile.mkdtemp(prefix="wasinn-ov-tflite-"))  # mode 0700
    try:
        # The folder is the reader's one writable place.
        CHILD.run(str(folder), [str(folder)], stdin=data, writable=[str(folder)], memory_bytes=memory_bytes)
        xml, weights = folder / "model.xml", folder / "model.bin"
        if not xml.is_file():
            error = folder / "error"
            text = error.read_text(encoding="utf-8", errors="replace") if error.is_file() else ""
            # OpenVINO names the file it read: the child's, which is gone (say "model.tflite").
            reason = text.partition("\n")[2].replace(f"{folder}{os.sep}", "")
            raise RuntimeError(reason or "OpenVINO could not read the model")
        blob = weights.read_bytes() if weights.is_file() else b""
        # The IR is read from memory, as an IR from a guest is (its XML names no file).
        return core.read_model(xml.read_bytes(), openvino.Tensor(np.frombuffer(blob, np.uint8)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
