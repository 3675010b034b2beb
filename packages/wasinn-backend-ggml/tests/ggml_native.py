"""Expectations from llama-cpp-python called natively (``Llama``), with the options a guest sends."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp


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
              embedding: bool = False) -> llama_cpp.Llama:
        key = (ctx_size, batch_size, threads, seed, embedding)
        if key not in self._cache:
            kwargs: dict[str, Any] = {"n_ctx": ctx_size, "n_batch": batch_size, "seed": seed, "verbose": False,
                                      "embedding": embedding}
            if threads:
                kwargs.update(n_threads=threads, n_threads_batch=threads)
            if embedding:
                kwargs["pooling_type"] = llama_cpp.LLAMA_POOLING_TYPE_MEAN
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

    def embed(self, prompt: str, *, ctx_size: int = 128) -> list[float]:
        vector = self.llama(ctx_size=ctx_size, embedding=True).embed(prompt)
        return [float(v) for v in vector]
