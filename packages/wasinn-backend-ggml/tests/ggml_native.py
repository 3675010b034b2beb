"""Expectations from llama-cpp-python called natively (``Llama``), with the options a guest sends."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np


@dataclass
class Result:
    tokens: list[int]
    pieces: list[bytes]
    input_tokens: int
    n_ctx: int

    @property
    def text(self) -> bytes:
        return b"".join(self.pieces)


class Native:
    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._cache: dict[tuple[Any, ...], llama_cpp.Llama] = {}

    def llama(self, *, ctx_size: int = 128, batch_size: int = 512, threads: int | None = None, seed: int = 0xFFFFFFFF,
              embedding: bool = False, pooling: int = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED) -> llama_cpp.Llama:
        key = (ctx_size, batch_size, threads, seed, embedding, pooling)
        if key not in self._cache:
            kwargs: dict[str, Any] = {"n_ctx": ctx_size, "n_batch": batch_size, "seed": seed, "verbose": False,
                                      "embedding": embedding}
            if threads:
                kwargs.update(n_threads=threads, n_threads_batch=threads)
            if embedding:
                kwargs["pooling_type"] = pooling
            self._cache[key] = llama_cpp.Llama(self.path, **kwargs)
        return self._cache[key]

    def generate(self, prompt: bytes, n_predict: int, *, temp: float = 0.0, top_p: float = 0.95,
                 repeat_penalty: float = 1.0, ctx_size: int = 128, seed: int = 0xFFFFFFFF,
                 eos: int | None = None) -> Result:
        """What Llama.generate gives: up to ``n_predict`` tokens, stopping at ``eos`` (or the model's
        end-of-generation tokens) and where the context is full."""
        llm = self.llama(ctx_size=ctx_size, seed=seed)
        llm.set_seed(seed)
        tokens = llm.tokenize(prompt, add_bos=True, special=True)
        out: list[int] = []
        pieces: list[bytes] = []
        room = llm.n_ctx() - len(tokens) + 1  # llama.cpp rounds the context size up
        for token in llm.generate(tokens, temp=temp, top_p=top_p, repeat_penalty=repeat_penalty, reset=True):
            if token == eos or llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                break
            out.append(token)
            pieces.append(llm.detokenize([token]))
            if len(out) >= min(n_predict, room):
                break
        return Result(out, pieces, len(tokens), llm.n_ctx())

    def filling(self, prompt: bytes, ctx_size: int, room: int) -> bytes:
        """``prompt`` and as many commas (one byte token each) as leave ``room`` cells of the context
        llama.cpp makes of ``ctx_size``: it rounds the size up (0.3.16 made 40 into 64, 0.3.36 makes
        any size under 256 into 256), so a test that fills the context asks the runtime its size."""
        llm = self.llama(ctx_size=ctx_size)
        target = llm.n_ctx() - room
        filled = prompt
        while len(llm.tokenize(filled, add_bos=True, special=True)) < target:
            filled += b","
        assert len(llm.tokenize(filled, add_bos=True, special=True)) == target
        return filled

    def n_ctx(self, ctx_size: int) -> int:
        """The context llama.cpp makes of ``ctx_size`` (rounded up). Generate natively with that size:
        llama-cpp-python 0.3.36's ``Llama`` sizes its token buffer by the size asked for, not the
        context it got, and fails past it."""
        return int(self.llama(ctx_size=ctx_size).n_ctx())

    def raw_embedding(self, prompt: str, *, ctx_size: int = 128,
                      pooling: int = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED) -> list[float]:
        """Llama.embed's vector, not normalised; with no pooling (what a model that declares none
        gets), the last token's, as WasmEdge returns it."""
        llm = self.llama(ctx_size=ctx_size, embedding=True, pooling=pooling)
        output: Any = llm.embed(prompt, normalize=False)
        if output and isinstance(output[0], list):  # one vector per token: no pooling
            output = output[-1]
        return [float(v) for v in output]

    def embed(self, prompt: str, *, ctx_size: int = 128, pooling: int = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED,
              norm: int = 2) -> list[float]:
        """What a WasmEdge guest gets: the native vector normalised as llama.cpp's
        common_embd_normalize does (float32 values and products, the sum in double)."""
        return reference_normalize(self.raw_embedding(prompt, ctx_size=ctx_size, pooling=pooling), norm)


def reference_normalize(vector: list[float], norm: int) -> list[float]:
    values = np.asarray(vector, dtype=np.float32)
    total = 0.0
    if norm == -1:
        total = 1.0
    elif norm == 0:
        total = max(abs(float(v)) for v in values) / 32760.0
    else:
        for v in values:
            total += float(np.float32(v) * np.float32(v)) if norm == 2 else abs(float(v)) ** norm
        total = math.sqrt(total) if norm == 2 else total ** (1.0 / norm)
    scale = np.float32(1.0 / total) if total > 0 else np.float32(0.0)
    return [float(np.float32(v) * scale) for v in values]
