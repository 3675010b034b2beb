"""Check a GGUF file in Python before llama.cpp reads it.

llama.cpp trusts parts of a GGUF file that a hostile (or just broken) file can get wrong, and some
of its checks are ``GGML_ASSERT``s that abort the whole process: a vocabulary with a repeated token
hits one in llama-vocab.cpp, a SentencePiece vocabulary without its byte tokens throws out of a
tokenizer call. So every file is walked here first: the header, every key/value pair, the tensor
table (counts, ranks, dimensions, types, offsets, bounds) and the tokenizer (token list, scores,
types, special token ids). Anything wrong is a :class:`GgufError` naming what and where; the backend
turns it into ``invalid_argument``. The walk reads only the metadata (a few hundred kB even for a
multi-GB model), never the weights.

What cannot be checked from the bytes (the meaning of the weights, architecture-specific
hyperparameters) is left to llama.cpp, and, for files from a guest, to a probe in a child process
(:mod:`._probe`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_STRING = 1 << 20  # one key or string value
MAX_KEY = 65535
MAX_TOKEN_BYTES = 4096
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 20
MAX_ARRAY = 1 << 28

# ggml type number -> (elements per block, bytes per block), for the types llama.cpp reads.
GGML_TYPES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17),
}

# GGUF value types: number -> (name, fixed size or 0 for strings/arrays)
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_SCALARS: dict[int, struct.Struct] = {
    U8: struct.Struct("<B"), I8: struct.Struct("<b"), U16: struct.Struct("<H"), I16: struct.Struct("<h"),
    U32: struct.Struct("<I"), I32: struct.Struct("<i"), F32: struct.Struct("<f"), BOOL: struct.Struct("<B"),
    U64: struct.Struct("<Q"), I64: struct.Struct("<q"), F64: struct.Struct("<d"),
}
_INTEGERS = (U8, I8, U16, I16, U32, I32, U64, I64)
#: Tokenizer models llama.cpp knows (llama-vocab.cpp); another name is refused before it is read.
TOKENIZER_MODELS = ("llama", "gpt2", "bert", "t5", "rwkv", "plamo2", "none", "no_vocab")
#: Tokenizers that fall back to byte tokens and throw (uncaught) when one is missing.
BYTE_FALLBACK = ("llama", "gpt2")
SPECIAL_ID_KEYS = ("bos", "eos", "unknown", "separator", "padding", "cls", "mask", "eot", "eom",
                   "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep", "prefix", "suffix", "middle")
MAX_TOKEN_TYPE = 6  # LLAMA_TOKEN_TYPE_BYTE


class GgufError(ValueError):
    """The file is not a GGUF llama.cpp can be trusted with; the message says why."""


@dataclass
class GgufInfo:
    """What the walk learned: enough to score and describe the model."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[tuple[int, ...], int, int]] = field(default_factory=dict)  # name -> dims, type, offset
    data_offset: int = 0
    file_size: int = 0

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def n_vocab(self) -> int:
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        return len(tokens) if isinstance(tokens, list) else 0


class _Reader:
    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self._read, self.size, self.pos = read, size, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise GgufError(f"{what} at byte {self.pos} runs past the end of the file ({self.size} bytes)")
        data = self._read(self.pos, n)
        self.pos += n
        return data

    def scalar(self, kind: int, what: str) -> Any:
        fmt = _SCALARS[kind]
        return fmt.unpack(self.take(fmt.size, what))[0]

    def u32(self, what: str) -> int:
        return int(self.scalar(U32, what))

    def u64(self, what: str) -> int:
        return int(self.scalar(U64, what))

    def string(self, what: str, limit: int = MAX_STRING) -> bytes:
        length = self.u64(f"{what} length")
        if length > limit:
            raise GgufError(f"{what} of {length} bytes (limit {limit})")
        return self.take(length, what)


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GgufError(f"{what} is not valid UTF-8") from None


def _value(reader: _Reader, kind: int, key: str, depth: int = 0) -> Any:
    if kind in _SCALARS:
        value = reader.scalar(kind, f"value of {key}")
        if kind == BOOL and value not in (0, 1):
            raise GgufError(f"{key}: bool value {value}")
        return bool(value) if kind == BOOL else value
    if kind == STRING:
        return _text(reader.string(f"string value of {key}"), f"value of {key}")
    if kind == ARRAY:
        if depth:
            raise GgufError(f"{key}: nested arrays are not supported by llama.cpp")
        element = reader.u32(f"array type of {key}")
        count = reader.u64(f"array length of {key}")
        if element not in _SCALARS and element != STRING:
            raise GgufError(f"{key}: array of value type {element}")
        if count > MAX_ARRAY:
            raise GgufError(f"{key}: array of {count} elements (limit {MAX_ARRAY})")
        if element in _SCALARS:
            fmt = _SCALARS[element]
            # at least this many bytes must remain: refuse absurd counts before reading anything
            raw = reader.take(count * fmt.size, f"array {key}")
            values = [v[0] for v in struct.iter_unpack(fmt.format, raw)] if count else []
            if element == F32 and any(v != v for v in values):  # NaN scores break sorting in the tokenizer
                raise GgufError(f"{key}: NaN in a float array")
            return values
        if count * 8 > reader.size - reader.pos:
            raise GgufError(f"{key}: {count} strings cannot fit in the rest of the file")
        limit = MAX_TOKEN_BYTES if key == "tokenizer.ggml.tokens" else MAX_STRING
        return [_text(reader.string(f"{key}[{i}]", limit), f"{key}[{i}]") for i in range(count)]
    raise GgufError(f"{key}: unknown value type {kind}")


def read_file(path: str) -> GgufInfo:
    """Validate the GGUF file at ``path`` (reads only its metadata)."""
    with open(path, "rb") as file:
        file.seek(0, 2)
        size = file.tell()

        def read(offset: int, n: int) -> bytes:
            file.seek(offset)
            return file.read(n)

        return _walk(_Reader(read, size))


def read_bytes(data: bytes | bytearray | memoryview) -> GgufInfo:
    """Validate a GGUF file given as bytes."""
    view = memoryview(data)
    return _walk(_Reader(lambda offset, n: bytes(view[offset:offset + n]), len(view)))


def _walk(reader: _Reader) -> GgufInfo:
    if reader.size < 4 or reader.take(4, "magic") != MAGIC:
        raise GgufError("not a GGUF file (no GGUF magic)")
    version = reader.u32("version")
    if version not in VERSIONS:
        raise GgufError(f"GGUF version {version} (llama.cpp reads versions {VERSIONS[0]} and {VERSIONS[-1]})")
    n_tensors = reader.u64("tensor count")
    n_kv = reader.u64("metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise GgufError(f"{n_tensors} tensors and {n_kv} metadata entries (limits {MAX_TENSORS}, {MAX_KV})")
    info = GgufInfo(version=version, file_size=reader.size)
    for i in range(n_kv):
        key = _text(reader.string(f"metadata key {i}", MAX_KEY), f"metadata key {i}")
        if not key or "\0" in key:
            raise GgufError(f"metadata key {i} ({key!r}) is empty or contains a NUL character")
        if key in info.metadata:
            raise GgufError(f"metadata key {key!r} appears twice")
        kind = reader.u32(f"value type of {key}")
        info.metadata[key] = _value(reader, kind, key)
    alignment = info.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 \
            or alignment & (alignment - 1):
        raise GgufError(f"general.alignment {alignment!r} is not a power of two")
    for i in range(n_tensors):
        name = _text(reader.string(f"tensor name {i}", 64), f"tensor name {i}")  # GGML_MAX_NAME is 64
        if name in info.tensors:
            raise GgufError(f"tensor {name!r} appears twice")
        n_dims = reader.u32(f"rank of tensor {name}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GgufError(f"tensor {name}: rank {n_dims} (1 to {MAX_DIMS})")
        dims = tuple(reader.u64(f"dimension of tensor {name}") for _ in range(n_dims))
        ggml_type = reader.u32(f"type of tensor {name}")
        offset = reader.u64(f"offset of tensor {name}")
        if ggml_type not in GGML_TYPES:
            raise GgufError(f"tensor {name}: unknown ggml type {ggml_type}")
        if any(d == 0 or d >= 1 << 62 for d in dims):
            raise GgufError(f"tensor {name}: dimensions {dims}")
        if offset % alignment:
            raise GgufError(f"tensor {name}: offset {offset} is not a multiple of the alignment {alignment}")
        info.tensors[name] = (dims, ggml_type, offset)
    info.data_offset = -(-reader.pos // alignment) * alignment
    available = reader.size - info.data_offset
    for name, (dims, ggml_type, offset) in info.tensors.items():
        block, block_bytes = GGML_TYPES[ggml_type]
        if dims[0] % block:
            raise GgufError(f"tensor {name}: first dimension {dims[0]} is not a multiple of the block size {block}")
        elements = 1
        for d in dims:
            elements *= d
        nbytes = elements // block * block_bytes
        if offset + nbytes > available:
            raise GgufError(f"tensor {name}: {nbytes} bytes at offset {offset} run past the end of the file")
    _check_tokenizer(info)
    return info


def _check_tokenizer(info: GgufInfo) -> None:
    meta = info.metadata
    model = meta.get("tokenizer.ggml.model")
    if model is None:
        return  # no vocabulary: llama.cpp loads such files vocab-less
    if model not in TOKENIZER_MODELS:
        raise GgufError(f"tokenizer.ggml.model {model!r} is not one llama.cpp knows")
    tokens = meta.get("tokenizer.ggml.tokens")
    if model in ("none", "no_vocab") and tokens is None:
        return
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise GgufError("tokenizer.ggml.tokens is missing or not a list of strings")
    n = len(tokens)
    seen: dict[str, int] = {}
    for i, raw in enumerate(tokens):
        # As llama-vocab.cpp reads a token: a C string (cut at a NUL), an empty one renamed.
        token = raw.split("\0", 1)[0] or f"[EMPTY_{i}]"
        if token in seen:
            shown = token if token == raw else f"{raw!r}, read by llama.cpp as {token!r},"
            raise GgufError(f"token {shown} appears twice in the vocabulary (ids {seen[token]} and {i}): "
                            f"llama.cpp aborts on that")
        seen[token] = i
    for key, kind in (("tokenizer.ggml.scores", float), ("tokenizer.ggml.token_type", int)):
        values = meta.get(key)
        if values is None:
            continue
        if not isinstance(values, list) or len(values) != n:
            raise GgufError(f"{key} has {len(values) if isinstance(values, list) else 'no'} entries for {n} tokens")
        if kind is int and any(not isinstance(v, int) or not 0 <= v <= MAX_TOKEN_TYPE for v in values):
            raise GgufError(f"{key}: a token type outside 0..{MAX_TOKEN_TYPE}")
    for name in SPECIAL_ID_KEYS:
        key = f"tokenizer.ggml.{name}_token_id"
        if key in meta:
            value = meta[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
                raise GgufError(f"{key} = {value!r} is not a token id (vocabulary of {n})")
    if model == "llama":
        missing = [b for b in range(256) if f"<0x{b:02X}>" not in seen]
        if missing:
            raise GgufError(f"SentencePiece vocabulary lacks byte token(s) <0x{missing[0]:02X}> ... "
                            f"({len(missing)} missing)")
    elif model == "gpt2":
        lost = [b for b in range(256) if _gpt2_byte(b) not in seen]
        if lost:
            raise GgufError(f"byte-level BPE vocabulary lacks {len(lost)} of the 256 byte tokens")
        merges = meta.get("tokenizer.ggml.merges")
        if merges is not None and (not isinstance(merges, list)
                                   or any(not isinstance(m, str) or " " not in m[1:] for m in merges)):
            raise GgufError("tokenizer.ggml.merges has an entry without two parts")


def _gpt2_byte(b: int) -> str:
    # GPT-2's printable mapping of the 256 byte values (bytes_to_unicode).
    if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255:
        return chr(b)
    shifted = [x for x in range(256) if not (33 <= x <= 126 or 161 <= x <= 172 or 174 <= x <= 255)]
    return chr(256 + shifted.index(b))
