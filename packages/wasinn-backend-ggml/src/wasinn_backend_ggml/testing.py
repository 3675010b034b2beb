"""Tiny random-weight llama models in GGUF, written on the spot (tests and benchmarks; no downloads).

Needs the ``gguf`` package (``pip install wasinn-backend-ggml[test]``). The vocabulary is
SentencePiece-style (tokenizer model ``llama``): ``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens
``<0x00>``..``<0xFF>`` (so any input can be tokenized) and a few dozen words; weights are random
normals from a fixed seed, so the same arguments always give the same file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORDS = ("▁", "▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁it", "▁you", "▁that", "▁he", "▁was",
         "▁for", "▁on", "▁are", "▁with", "▁as", "▁I", "▁his", "▁they", "▁be", "▁at", "▁one", "▁have",
         "▁this", "▁from", "▁or", "▁had", "▁by", "▁hot", "▁word", "▁but", "▁what", "▁some", "▁we",
         "▁can", "▁out", "▁other", "▁were", "▁all", "▁there", "▁when", "▁up", "▁use", "▁your", "▁how",
         "▁said", "▁an", "▁each", "▁she", "▁hello", "▁world", "▁cat", "▁dog", "▁llama", "▁wasm",
         "▁chat", "▁token", "s", "ed", "ing", "ly")

#: tokenizer.ggml.token_type values (llama.cpp's LLAMA_TOKEN_TYPE_*).
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


@dataclass(frozen=True)
class TinyLlama:
    """The shape of a test model. The defaults give the ~0.5 MB model the tests use."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 128
    n_ctx_train: int = 256
    seed: int = 0
    #: The end-of-sequence token: tests point it at a token the model is known to generate, so that
    #: an answer ends there (the weights do not depend on it).
    eos_id: int = 2
    dtype: str = "f32"  # or "f16" (half the bytes: the benchmark's bigger model)
    #: The layers' weight scale. Huge values overflow llama.cpp's arithmetic (NaN activations): a
    #: broken but well-formed model, for the tests of what such a model outputs.
    weight_scale: float = 0.08


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + list(WORDS)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(WORDS))]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(WORDS)
    return tokens, scores, types


#: GGUF value type names for ``write_tiny_llama(metadata=...)``.
VALUE_TYPES = ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool", "str")


def write_tiny_llama(path: str | Path, spec: TinyLlama = TinyLlama(), *, tokens: list[str] | None = None,
                     metadata: Mapping[str, tuple[Any, str]] | None = None) -> Path:
    """Write a random llama GGUF to ``path`` and return it. ``tokens`` replaces the vocabulary's
    texts (same length), to make hostile files. ``metadata`` adds or replaces keys, each as
    ``(value, type)`` with a type of :data:`VALUE_TYPES` (``{"llama.context_length": (2**40, "u64")}``)."""
    import gguf

    kinds = dict(zip(VALUE_TYPES, (gguf.GGUFValueType.UINT8, gguf.GGUFValueType.INT8, gguf.GGUFValueType.UINT16,
                                   gguf.GGUFValueType.INT16, gguf.GGUFValueType.UINT32, gguf.GGUFValueType.INT32,
                                   gguf.GGUFValueType.UINT64, gguf.GGUFValueType.INT64, gguf.GGUFValueType.FLOAT32,
                                   gguf.GGUFValueType.FLOAT64, gguf.GGUFValueType.BOOL,
                                   gguf.GGUFValueType.STRING), strict=True))
    extra = dict(metadata or {})

    path = Path(path)
    vocab, scores, types = vocabulary()
    if tokens is not None:
        vocab = tokens
    n_vocab = len(vocab)
    rng = np.random.default_rng(spec.seed)
    dtype = np.float16 if spec.dtype == "f16" else np.float32
    head_dim = spec.n_embd // spec.n_head

    def weight(*shape: int, scale: float = spec.weight_scale) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(dtype)

    def norm(n: int) -> np.ndarray:
        return np.ones(n, np.float32)  # norms stay f32, as llama.cpp's converters write them

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("wasinn tiny llama")
    writer.add_context_length(spec.n_ctx_train)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(1 if spec.dtype == "f16" else 0)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(spec.eos_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    for key, (value, kind) in extra.items():
        if key in writer.kv_data[0]:
            del writer.kv_data[0][key]  # replaced, not written twice
        writer.add_key_value(key, value, kinds[kind])

    writer.add_tensor("token_embd.weight", weight(n_vocab, spec.n_embd, scale=1.0))
    for i in range(spec.n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", norm(spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(head_dim * spec.n_head_kv, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(head_dim * spec.n_head_kv, spec.n_embd))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(spec.n_embd, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", norm(spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(spec.n_ff, spec.n_embd))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(spec.n_embd, spec.n_ff))
    writer.add_tensor("output_norm.weight", norm(spec.n_embd))
    writer.add_tensor("output.weight", weight(n_vocab, spec.n_embd, scale=0.5))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_tiny_mmproj(path: str | Path, *, n_embd_text: int = 64, image_size: int = 32, patch_size: int = 8,
                      n_embd: int = 32, n_ff: int = 64, n_head: int = 4, n_layer: int = 1, seed: int = 0) -> Path:
    """Write a random llava-style multimodal projector (CLIP vision encoder + MLP projector, GGUF
    architecture ``clip``, projector type ``mlp``) whose output width is ``n_embd_text``: llama.cpp's
    mtmd accepts it for the tiny llama (an image becomes ``(image_size / patch_size)**2`` tokens)."""
    import gguf

    path = Path(path)
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "clip")

    def weight(name: str, *shape: int) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))

    def norm(name: str, n: int) -> None:
        writer.add_tensor(f"{name}.weight", np.ones(n, np.float32))
        weight(f"{name}.bias", n)

    writer.add_bool("clip.has_vision_encoder", True)
    writer.add_bool("clip.has_llava_projector", True)
    writer.add_string("clip.projector_type", "mlp")
    writer.add_bool("clip.use_gelu", True)
    writer.add_uint32("clip.vision.image_size", image_size)
    writer.add_uint32("clip.vision.patch_size", patch_size)
    writer.add_uint32("clip.vision.embedding_length", n_embd)
    writer.add_uint32("clip.vision.feed_forward_length", n_ff)
    writer.add_uint32("clip.vision.projection_dim", n_embd_text)
    writer.add_uint32("clip.vision.attention.head_count", n_head)
    writer.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    writer.add_uint32("clip.vision.block_count", n_layer)
    writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    writer.add_uint32("general.file_type", 0)
    weight("v.patch_embd.weight", n_embd, 3, patch_size, patch_size)
    weight("v.class_embd", n_embd)
    weight("v.position_embd.weight", (image_size // patch_size) ** 2 + 1, n_embd)
    norm("v.pre_ln", n_embd)
    for i in range(n_layer):
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            weight(f"v.blk.{i}.{name}.weight", n_embd, n_embd)
            weight(f"v.blk.{i}.{name}.bias", n_embd)
        norm(f"v.blk.{i}.ln1", n_embd)
        norm(f"v.blk.{i}.ln2", n_embd)
        weight(f"v.blk.{i}.ffn_up.weight", n_ff, n_embd)
        weight(f"v.blk.{i}.ffn_up.bias", n_ff)
        weight(f"v.blk.{i}.ffn_down.weight", n_embd, n_ff)
        weight(f"v.blk.{i}.ffn_down.bias", n_embd)
    weight("mm.0.weight", n_embd_text, n_embd)
    weight("mm.0.bias", n_embd_text)
    weight("mm.2.weight", n_embd_text, n_embd_text)
    weight("mm.2.bias", n_embd_text)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
