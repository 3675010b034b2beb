"""Load a guest's whisper.cpp model in a throwaway process, and transcribe a second of audio with it,
before this process does.

:mod:`.validate` checks everything the file format says; whisper.cpp still trusts the weights'
*meaning*, and some of its checks abort the process (``GGML_ASSERT``) rather than fail. A crash in the
child is an ``invalid_argument`` for the guest, not the end of the host.

``WASINN_WHISPER_PROBE``: ``untrusted`` (default: models whose bytes came from a guest), ``always`` or
``never``. A guest cannot change it. Results are cached by the SHA-256 of the model's bytes.
"""

from __future__ import annotations

from wasinn.isolation import ChildProbe

PROBE_ENV = "WASINN_WHISPER_PROBE"
TIMEOUT_S = 120.0

# Runs in the child: the model's bytes on stdin. Exit 0 = fine, 3 = whisper.cpp refused it politely;
# a signal = a crash. The log callback is removed before exit (left installed, it aborts the process).
_SCRIPT = r"""
import ctypes, sys
import numpy as np
import _pywhispercpp as pw
errors = []
pw.whisper_log_set(lambda level, text: errors.append(text) if level == 4 else None)
try:
    data = sys.stdin.buffer.read()
    buf = ctypes.create_string_buffer(data, len(data))
    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    cparams = pw.whisper_context_default_params()
    cparams.use_gpu = False
    ctx = pw.whisper_init_from_buffer_with_params(new(ctypes.addressof(buf), None, None), len(data), cparams)
    if errors:
        sys.stderr.write("probe: " + errors[-1])
        pw.whisper_log_set(None)
        sys.exit(3)
    params = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_GREEDY)
    params.n_threads, params.print_progress, params.no_context = 1, False, True
    params.max_tokens, params.audio_ctx, params.temperature_inc = 4, 64, 0.0
    pcm = (0.1 * np.sin(np.arange(16000, dtype=np.float32) / 8)).astype(np.float32)
    pw.whisper_full(ctx, params, pcm, len(pcm))
    for i in range(pw.whisper_full_n_segments(ctx)):
        pw.whisper_full_get_segment_text(ctx, i)
    pw.whisper_free(ctx)
except Exception as exc:
    sys.stderr.write(f"probe: {type(exc).__name__}: {exc}\n")
    pw.whisper_log_set(None)
    sys.exit(3)
pw.whisper_log_set(None)
"""

CHILD = ChildProbe(PROBE_ENV, _SCRIPT, what="whisper.cpp model", crashes="whisper.cpp", timeout_s=TIMEOUT_S,
                   cache_size=256, preload=("numpy", "_pywhispercpp"))
wanted = CHILD.wanted


def probe(data: bytes, digest: str, memory_bytes: int | None = None) -> None:
    """Raise WasiNnError(INVALID_ARGUMENT) if loading and running the model kills a child process."""
    CHILD.run(("sha256", digest), stdin=data, memory_bytes=memory_bytes)
