"""Load a GGUF model in a throwaway process before this process does.

:mod:`.validate` checks everything the file format says, but llama.cpp also trusts the file's
*meaning* (architecture hyperparameters, tensor shapes per architecture, tokenizer details) and
some of its checks abort the process. A model whose bytes came from a guest (``load``) is
therefore first loaded, given a context and a tokenize + decode of a short text in a child
process; a crash there is an ``invalid_argument`` for the guest, not the end of the host. The
child's context and token buffer are small and fixed, whatever context the model declares.

``WASINN_GGML_PROBE`` chooses when: ``untrusted`` (default: models whose bytes came from a guest),
``always`` (also the embedder's named models) or ``never``. A guest cannot change it. A model is
probed once per process (results cached by the SHA-256 of a guest's bytes, or by the file's path,
size and modification time).
"""

from __future__ import annotations

import os

from wasinn.isolation import ChildProbe

PROBE_ENV = "WASINN_GGML_PROBE"
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
    # A buffer sized by the text, not by the model's declared context (LlamaModel.tokenize allocates
    # 4 bytes per declared token: 8 GiB for a model that declares 2^31).
    text = b"probe \x00\xff\xe2\x96\x81 <s></s> text"
    buffer = (llama_cpp.llama_token * (3 * len(text) + 16))()
    n = llama_cpp.llama_tokenize(model.vocab, text, len(text), buffer, len(buffer), True, True)
    tokens = list(buffer[:max(n, 0)])[:32]
    for t in tokens:
        model.token_to_piece(t)
    batch = _internals.LlamaBatch(n_tokens=64, embd=0, n_seq_max=1, verbose=False)
    batch.set_batch(tokens or [0], n_past=0, logits_all=False)
    ctx.decode(batch)
except Exception as exc:
    sys.stderr.write(f"probe: {type(exc).__name__}: {exc}\n")
    sys.exit(3)
"""

CHILD = ChildProbe(PROBE_ENV, _SCRIPT, what="GGUF model", crashes="llama.cpp", timeout_s=TIMEOUT_S,
                   preload=("llama_cpp",))
policy = CHILD.policy
wanted = CHILD.wanted


def probe(path: str, digest: str | None = None, memory_bytes: int | None = None) -> None:
    """Raise WasiNnError(INVALID_ARGUMENT) if loading the model at ``path`` kills a child process.

    ``digest`` (the SHA-256 of a guest's model bytes) keys the cache where the path is a temporary
    file, so that a guest loading the same model again is not probed again.
    """
    stat = os.stat(path)
    key = ("sha256", digest) if digest else (path, str(stat.st_size), str(stat.st_mtime_ns))
    # The probe may read this file, and nothing else of the host's.
    CHILD.run(key, [path], read=[path], memory_bytes=memory_bytes)
