"""whisper.cpp model files: detection and a whitelist check of everything the file says, before
whisper.cpp sees a byte.

The format (whisper.cpp's ``ggml`` files, not GGUF): the magic ``0x67676d6c`` (``lmgg`` on disk),
eleven int32 hyperparameters, the mel filterbank (``n_mel``, ``n_fft``, floats), the vocabulary
(a count, then length-prefixed token texts) and the tensor table (per tensor: ``n_dims``, name length,
type, the dims, the name, the data), which runs to the end of the file.

whisper.cpp allocates every tensor from the hyperparameters before it reads one, sizes its compute
buffers from them, and reads each token text into a string of the length the file says: a hostile
header is gigabytes of host memory, or an out-of-bounds view. So the check is a whitelist: every
hyperparameter within the bounds of the published models, a filterbank and vocabulary whose sizes
fit the file, and a tensor table that holds exactly the tensors the hyperparameters call for, each
with exactly the shape and type whisper.cpp will allocate, and nothing after the last one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = 0x67676D6C
MAGIC_BYTES = struct.pack("<I", MAGIC)  # b"lmgg"
HPARAM_NAMES = ("n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_text_ctx",
                "n_text_state", "n_text_head", "n_text_layer", "n_mels", "ftype")
HEADER_BYTES = 4 + 4 * len(HPARAM_NAMES)

#: ggml tensor types a whisper.cpp file may hold: type -> (elements per block, bytes per block).
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
}
F32, F16 = 0, 1
#: whisper.cpp's ftype (ggml_ftype) -> the type of its big 2-D weights. 0 (all f32) is not here:
#: whisper.cpp aborts inside the encoder on such a model (its f32 convolution); 4 (Q4_1_SOME_F16)
#: mixes types per tensor in a way whisper.cpp does not load either.
FTYPE_WTYPE: dict[int, int] = {1: F16, 2: 2, 3: 3, 7: 8, 8: 6, 9: 7, 10: 10, 11: 11, 12: 12, 13: 13, 14: 14}
#: ftype is stored as ftype + 1000 * the quantization version (GGML_QNT_VERSION_FACTOR).
QNT_VERSION_FACTOR = 1000
MAX_QNT_VERSION = 2

# Bounds: the published models (tiny ... large-v3) lie well inside them.
N_VOCAB = (51864, 51866)  # English-only 51864, multilingual 51865, large-v3 51866
MAX_AUDIO_CTX = 1500  # 30 s of audio; a larger one is a view past the positional embedding
MAX_TEXT_CTX = 448
MAX_STATE = 1280  # large
MAX_HEADS = 20
MAX_LAYERS = 32
N_MELS = (80, 128)
N_FFT = 201  # WHISPER_N_FFT / 2 + 1
MAX_TOKEN_BYTES = 256  # the longest token text of the published vocabularies is 128 bytes
MAX_NAME_BYTES = 64
MAX_DIMS = 3


class WhisperFormatError(ValueError):
    """The bytes are not a whisper.cpp model whisper.cpp may be given."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dims: tuple[int, ...]  # ggml order: ne[0] first (the file's order)
    ttype: int
    offset: int  # of the data
    nbytes: int


@dataclass(frozen=True)
class WhisperInfo:
    hparams: dict[str, int]
    ftype: int
    n_tokens: int  # in the file's vocabulary (whisper.cpp names the rest itself)
    tensors: tuple[TensorEntry, ...]

    @property
    def multilingual(self) -> bool:
        return self.hparams["n_vocab"] >= 51865

    @property
    def model_type(self) -> str:
        return {4: "tiny", 6: "base", 12: "small", 24: "medium", 32: "large"}.get(
            self.hparams["n_audio_layer"], f"{self.hparams['n_audio_layer']}-layer")


def is_whisper(data: bytes | bytearray | memoryview) -> bool:
    """The magic and a plausible header (cheap: detection, not validation)."""
    if len(data) < HEADER_BYTES or bytes(data[:4]) != MAGIC_BYTES:
        return False
    values = struct.unpack_from("<11i", bytes(data[4:HEADER_BYTES]))
    hp = dict(zip(HPARAM_NAMES, values, strict=True))
    # The magic alone is also the legacy llama.cpp "ggml" file's: its header says n_vocab 32000 etc.
    return N_VOCAB[0] <= hp["n_vocab"] <= N_VOCAB[1] and hp["n_mels"] in N_MELS


def tensor_bytes(dims: tuple[int, ...], ttype: int) -> int:
    block, size = GGML_TYPES[ttype]
    count = 1
    for d in dims:
        count *= d
    if dims[0] % block:
        raise WhisperFormatError(f"a tensor of type {ttype} needs rows of a multiple of {block} elements, "
                                 f"not {dims[0]}")
    return count // block * size


def expected_tensors(hp: dict[str, int], wtype: int) -> Iterator[tuple[str, tuple[int, ...], int]]:
    """Every tensor whisper.cpp allocates for these hyperparameters: (name, ggml dims, type)."""
    a, t = hp["n_audio_state"], hp["n_text_state"]
    conv = F16 if wtype != F32 else F32
    yield "encoder.positional_embedding", (a, hp["n_audio_ctx"]), F32
    yield "encoder.conv1.weight", (3, hp["n_mels"], a), conv
    yield "encoder.conv1.bias", (1, a), F32
    yield "encoder.conv2.weight", (3, a, a), conv
    yield "encoder.conv2.bias", (1, a), F32
    yield "encoder.ln_post.weight", (a,), F32
    yield "encoder.ln_post.bias", (a,), F32
    for i in range(hp["n_audio_layer"]):
        yield from _block(f"encoder.blocks.{i}", a, wtype, cross=False)
    yield "decoder.positional_embedding", (t, hp["n_text_ctx"]), F32
    yield "decoder.token_embedding.weight", (t, hp["n_vocab"]), wtype
    yield "decoder.ln.weight", (t,), F32
    yield "decoder.ln.bias", (t,), F32
    for i in range(hp["n_text_layer"]):
        yield from _block(f"decoder.blocks.{i}", t, wtype, cross=True)


def _block(prefix: str, n: int, wtype: int, *, cross: bool) -> Iterator[tuple[str, tuple[int, ...], int]]:
    yield f"{prefix}.mlp_ln.weight", (n,), F32
    yield f"{prefix}.mlp_ln.bias", (n,), F32
    yield f"{prefix}.mlp.0.weight", (n, 4 * n), wtype
    yield f"{prefix}.mlp.0.bias", (4 * n,), F32
    yield f"{prefix}.mlp.2.weight", (4 * n, n), wtype
    yield f"{prefix}.mlp.2.bias", (n,), F32
    for attn in ("attn", "cross_attn") if cross else ("attn",):
        yield f"{prefix}.{attn}_ln.weight", (n,), F32
        yield f"{prefix}.{attn}_ln.bias", (n,), F32
        yield f"{prefix}.{attn}.query.weight", (n, n), wtype
        yield f"{prefix}.{attn}.query.bias", (n,), F32
        yield f"{prefix}.{attn}.key.weight", (n, n), wtype
        yield f"{prefix}.{attn}.value.weight", (n, n), wtype
        yield f"{prefix}.{attn}.value.bias", (n,), F32
        yield f"{prefix}.{attn}.out.weight", (n, n), wtype
        yield f"{prefix}.{attn}.out.bias", (n,), F32


def check_hparams(hp: dict[str, int]) -> tuple[int, int]:
    """Raise WhisperFormatError unless every hyperparameter is in bounds; (ftype, its weight type)."""
    def within(name: str, low: int, high: int) -> None:
        if not low <= hp[name] <= high:
            raise WhisperFormatError(f"{name} = {hp[name]} is outside [{low}, {high}]")

    within("n_vocab", *N_VOCAB)
    within("n_audio_ctx", 1, MAX_AUDIO_CTX)
    within("n_text_ctx", 1, MAX_TEXT_CTX)
    for side in ("audio", "text"):
        within(f"n_{side}_state", 1, MAX_STATE)
        within(f"n_{side}_head", 1, MAX_HEADS)
        within(f"n_{side}_layer", 1, MAX_LAYERS)
        if hp[f"n_{side}_state"] % hp[f"n_{side}_head"]:
            raise WhisperFormatError(f"n_{side}_state {hp[f'n_{side}_state']} is not a multiple of "
                                     f"n_{side}_head {hp[f'n_{side}_head']}")
    if hp["n_mels"] not in N_MELS:
        raise WhisperFormatError(f"n_mels = {hp['n_mels']}: whisper models have {' or '.join(map(str, N_MELS))}")
    raw = hp["ftype"]
    if raw < 0 or raw // QNT_VERSION_FACTOR > MAX_QNT_VERSION:
        raise WhisperFormatError(f"ftype {raw} is not a whisper.cpp ftype")
    ftype = raw % QNT_VERSION_FACTOR
    if ftype == 0:
        raise WhisperFormatError("an all-f32 model (ftype 0): whisper.cpp aborts inside the encoder on it "
                                 "(convert it to f16)")
    if ftype not in FTYPE_WTYPE:
        raise WhisperFormatError(f"ftype {ftype} is not one whisper.cpp loads")
    return ftype, FTYPE_WTYPE[ftype]


def read_header(data: bytes | bytearray | memoryview) -> dict[str, int]:
    if len(data) < HEADER_BYTES:
        raise WhisperFormatError(f"{len(data)} bytes: shorter than a whisper.cpp header")
    if bytes(data[:4]) != MAGIC_BYTES:
        raise WhisperFormatError("no whisper.cpp magic")
    return dict(zip(HPARAM_NAMES, struct.unpack_from("<11i", bytes(data[4:HEADER_BYTES])), strict=True))


def validate(data: bytes | bytearray | memoryview) -> WhisperInfo:
    """Check the whole file; raise :class:`WhisperFormatError` saying what is wrong."""
    view = memoryview(data).cast("B")
    size = len(view)
    hp = read_header(view)
    ftype, wtype = check_hparams(hp)
    pos = HEADER_BYTES

    def ints(count: int, what: str) -> tuple[int, ...]:
        nonlocal pos
        if pos + 4 * count > size:
            raise WhisperFormatError(f"the file ends inside {what} (offset {pos})")
        values = struct.unpack_from(f"<{count}i", view, pos)
        pos += 4 * count
        return values

    n_mel, n_fft = ints(2, "the mel filterbank header")
    if n_mel != hp["n_mels"] or n_fft != N_FFT:
        raise WhisperFormatError(f"mel filterbank {n_mel} x {n_fft}; the model needs {hp['n_mels']} x {N_FFT}")
    pos += 4 * n_mel * n_fft
    (n_tokens,) = ints(1, "the vocabulary header")
    if not 0 < n_tokens <= hp["n_vocab"]:
        raise WhisperFormatError(f"a vocabulary of {n_tokens} tokens (the model has {hp['n_vocab']})")
    for index in range(n_tokens):
        (length,) = ints(1, "the vocabulary")
        if not 0 <= length <= MAX_TOKEN_BYTES:
            raise WhisperFormatError(f"token {index} is {length} bytes long (at most {MAX_TOKEN_BYTES})")
        pos += length
        if pos > size:
            raise WhisperFormatError(f"the file ends inside token {index}")

    wanted = {name: (dims, ttype) for name, dims, ttype in expected_tensors(hp, wtype)}
    found: list[TensorEntry] = []
    seen: set[str] = set()
    while pos < size:
        n_dims, name_len, ttype = ints(3, "a tensor header")
        if not 1 <= n_dims <= MAX_DIMS or not 1 <= name_len <= MAX_NAME_BYTES:
            raise WhisperFormatError(f"a tensor header at offset {pos - 12} says {n_dims} dims and a "
                                     f"{name_len}-byte name")
        dims = ints(n_dims, "a tensor header")
        if pos + name_len > size:
            raise WhisperFormatError("the file ends inside a tensor name")
        raw_name = bytes(view[pos:pos + name_len])
        pos += name_len
        name = raw_name.decode("ascii", "replace")
        if name not in wanted:
            raise WhisperFormatError(f"unexpected tensor {name!r}")
        if name in seen:
            raise WhisperFormatError(f"tensor {name!r} appears twice")
        want_dims, want_type = wanted[name]
        if tuple(dims) != want_dims or ttype != want_type:
            raise WhisperFormatError(f"tensor {name!r} is {list(dims)} of type {ttype}; the hyperparameters "
                                     f"call for {list(want_dims)} of type {want_type}")
        nbytes = tensor_bytes(want_dims, want_type)
        if pos + nbytes > size:
            raise WhisperFormatError(f"the file ends inside tensor {name!r}")
        found.append(TensorEntry(name, want_dims, want_type, pos, nbytes))
        seen.add(name)
        pos += nbytes
    missing = [name for name in wanted if name not in seen]
    if missing:
        raise WhisperFormatError(f"{len(missing)} tensor(s) missing, the first {missing[0]!r}")
    return WhisperInfo(hparams=hp, ftype=ftype, n_tokens=n_tokens, tensors=tuple(found))
