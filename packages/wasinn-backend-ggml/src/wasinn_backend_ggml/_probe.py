"""Load a GGUF model in a throwaway process before this process does.

:mod:`.validate` checks everything the file format says, but llama.cpp also trusts the file's
*meaning* (architecture hyperparameters, tensor shapes per architecture, tokenizer details) and
some of its checks abort the process. A model whose bytes came from a guest (``load``) is
therefore first loaded, given a context and a tokenize + decode of a short text in a child
process; a crash there is an ``invalid_argument`` for the guest, not the end of the host.

``WASINN_GGML_PROBE`` chooses when: ``untrusted`` (default: models whose bytes came from a guest),
``always`` (also the embedder's named models) or ``never``. A guest cannot change it. A model is
probed once per process (results cached by the SHA-256 of a guest's bytes, or by the file's path,
size and modification time).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from wasinn import ErrorCode, WasiNnError

PROBE_ENV = "WASINN_GGML_PROBE"
POLICIES = ("untrusted", "always", "never")
TIMEOUT_S = 120.0

# Runs in the child. Exit 0 = fine, 3 = llama.cpp refused politely (the parent reports it
# in-process); death by a signal = a crash the parent must not suffer.
_SCRIPT = r"""
import sys
import llama_cpp
from llama_cpp import _internals
quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)  # kept alive: llama.cpp calls it
llama_cpp.llama_log_set(quiet, None)
path = sys.argv[1]
try:
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    model = _internals.LlamaModel(path_model=path, params=params, verbose=False)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx, cparams.n_batch, cparams.n_ubatch, cparams.n_threads, cparams.n_threads_batch = 64, 64, 64, 1, 1
    ctx = _internals.LlamaContext(model=model, params=cparams, verbose=False)
    tokens = model.tokenize(b"probe \x00\xff\xe2\x96\x81 <s></s> text", True, True)[:32]
    for t in tokens:
        model.token_to_piece(t)
    batch = _internals.LlamaBatch(n_tokens=64, embd=0, n_seq_max=1, verbose=False)
    batch.set_batch(tokens or [0], n_past=0, logits_all=False)
    ctx.decode(batch)
except Exception as exc:
    sys.stderr.write(f"probe: {type(exc).__name__}: {exc}\n")
    sys.exit(3)
"""

_passed: set[tuple[str, ...]] = set()
_lock = threading.Lock()


def policy() -> str:
    value = os.environ.get(PROBE_ENV, "untrusted").strip().lower() or "untrusted"
    return value if value in POLICIES else "untrusted"


def wanted(trusted: bool) -> bool:
    chosen = policy()
    return chosen == "always" or (chosen == "untrusted" and not trusted)


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def probe(path: str, digest: str | None = None) -> None:
    """Raise WasiNnError(INVALID_ARGUMENT) if loading the model at ``path`` kills a child process.

    ``digest`` (the SHA-256 of a guest's model bytes) keys the cache where the path is a temporary
    file, so that a guest loading the same model again is not probed again.
    """
    stat = os.stat(path)
    key = ("sha256", digest) if digest else (path, str(stat.st_size), str(stat.st_mtime_ns))
    with _lock:
        if key in _passed:
            return
    try:
        result = subprocess.run([sys.executable, "-c", _SCRIPT, path], capture_output=True,
                                timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"the GGUF model probe did not finish in {TIMEOUT_S:g} s "
                                                   f"(set {PROBE_ENV}=never to skip probing)") from None
    except OSError as exc:
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"cannot start the GGUF model probe: {exc}") from None
    if result.returncode < 0:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed GGUF model: it crashes llama.cpp "
                                                      f"({_signal_name(result.returncode)} in a probe process)")
    if result.returncode not in (0, 3):
        detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed GGUF model: the probe process failed "
                                                      f"(exit {result.returncode}: {detail[0]})")
    with _lock:
        _passed.add(key)
