"""The ``npz-mlp`` model format: a multilayer perceptron as a NumPy ``.npz`` archive.

An archive (a zip of ``.npy`` arrays, as :func:`numpy.savez` writes) holding:

* ``W0.npy``, ``b0.npy``, ``W1.npy``, ``b1.npy``, ...: layer ``i`` computes
  ``h = act_i(h @ W{i} + b{i})``, with ``W{i}`` of shape ``[inputs, outputs]`` and ``b{i}`` of
  shape ``[outputs]``, all of one float dtype (f16, f32 or f64);
* ``meta.npy``: a 0-d string array holding a JSON object::

    {"format": "npz-mlp", "version": 1, "layers": 2,
     "activation": "relu",            # after every layer but the last
     "output_activation": "softmax",  # after the last layer
     "input": {"name": "pixels", "shape": [1, 64]},
     "output": {"name": "probabilities", "shape": [1, 10]}}

  Activations: ``identity``, ``relu``, ``sigmoid``, ``tanh``, ``softmax`` (over the last axis).
  A ``null`` dimension in a shape is dynamic (the batch, typically).

Arrays are read with ``allow_pickle=False``, and sizes are checked before anything is decompressed.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT = "npz-mlp"
VERSION = 1
META = "meta.npy"
MAX_LAYERS = 64
#: Uncompressed bytes an archive may expand to, at most (and at most 64 times its own size).
MAX_UNCOMPRESSED = 1 << 30
FLOAT_DTYPES = ("float16", "float32", "float64")


def _softmax(z: np.ndarray) -> np.ndarray:
    shifted = np.exp(z - z.max(axis=-1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def _sigmoid(z: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1 / (1 + np.exp(-z))
    return result


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, np.asarray(0, z.dtype)),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
}


class ModelError(ValueError):
    """The bytes are not a valid npz-mlp model; the message says why."""


@dataclass(frozen=True)
class Port:
    """The model's input or output: a name and a shape (``None`` = dynamic dimension)."""

    name: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Mlp:
    """A parsed model. :meth:`forward` runs it."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    input: Port
    output: Port
    activation: str = "relu"
    output_activation: str = "identity"

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.weights[0].dtype

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The output for ``x`` (same dtype as the weights)."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = ACTIVATIONS[self.output_activation if i == last else self.activation](h @ w + b)
        return np.ascontiguousarray(h, dtype=self.dtype)


def dump_mlp(mlp: Mlp) -> bytes:
    """The archive bytes of ``mlp``: reproducible (fixed timestamps, sorted members)."""
    validate(mlp)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "layers": len(mlp.weights),
        "activation": mlp.activation,
        "output_activation": mlp.output_activation,
        "input": {"name": mlp.input.name, "shape": list(mlp.input.shape)},
        "output": {"name": mlp.output.name, "shape": list(mlp.output.shape)},
    }
    arrays: dict[str, np.ndarray] = {META: np.array(json.dumps(meta, sort_keys=True))}
    for i, (w, b) in enumerate(zip(mlp.weights, mlp.biases, strict=True)):
        arrays[f"W{i}.npy"], arrays[f"b{i}.npy"] = w, b
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arrays[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), member.getvalue())
    return buffer.getvalue()


def is_npz_mlp(data: bytes | bytearray | memoryview) -> bool:
    """True if ``data`` is a zip archive with the members of this format (reads only the
    archive's directory; never raises)."""
    if bytes(data[:4]) != b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except Exception:
        return False
    return {META, "W0.npy", "b0.npy"} <= names


def load_mlp(data: bytes | bytearray | memoryview) -> Mlp:
    """Read and validate a model; :class:`ModelError` says what is wrong."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            expanded = sum(info.file_size for info in infos.values())
            if expanded > min(MAX_UNCOMPRESSED, 64 * len(data) + (1 << 20)):
                raise ModelError(f"the archive would expand to {expanded} bytes")
            if META not in infos:
                raise ModelError(f"no {META} member")
            meta = _meta(_array(archive, META))
            layers = meta["layers"]
            weights = tuple(_array(archive, f"W{i}.npy") for i in range(layers))
            biases = tuple(_array(archive, f"b{i}.npy") for i in range(layers))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ModelError(f"not a readable npz archive: {exc}") from None
    mlp = Mlp(weights=weights, biases=biases, activation=meta["activation"],
              output_activation=meta["output_activation"], input=_port(meta, "input"),
              output=_port(meta, "output"))
    validate(mlp)
    return mlp


def _array(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        with archive.open(name) as member:
            array: np.ndarray = np.lib.format.read_array(io.BytesIO(member.read()), allow_pickle=False)
    except KeyError:
        raise ModelError(f"no {name} member") from None
    except ValueError as exc:  # bad .npy header, object arrays (pickles are refused)
        raise ModelError(f"{name}: {exc}") from None
    return array


def _meta(array: np.ndarray) -> dict[str, Any]:
    if array.shape != () or array.dtype.kind != "U":
        raise ModelError(f"{META} must be a 0-d string array")
    try:
        meta = json.loads(str(array))
    except ValueError as exc:
        raise ModelError(f"{META} is not JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{META} does not describe an {FORMAT} model")
    if meta.get("version") != VERSION:
        raise ModelError(f"version {meta.get('version')!r} is not supported (only {VERSION})")
    layers = meta.get("layers")
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers <= MAX_LAYERS:
        raise ModelError(f"layers must be an integer from 1 to {MAX_LAYERS}, got {layers!r}")
    for key in ("activation", "output_activation"):
        if meta.get(key, "identity") not in ACTIVATIONS:
            raise ModelError(f"{key} {meta.get(key)!r} is not one of {', '.join(ACTIVATIONS)}")
        meta.setdefault(key, "identity")
    return meta


def _port(meta: Mapping[str, Any], key: str) -> Port:
    port = meta.get(key)
    if not isinstance(port, dict) or not isinstance(port.get("name"), str) or not isinstance(port.get("shape"), list):
        raise ModelError(f"{key} must be an object with a name and a shape")
    shape = port["shape"]
    if not shape or not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape):
        raise ModelError(f"{key} shape {shape!r}: positive integers or null")
    return Port(port["name"], tuple(shape))


def validate(mlp: Mlp) -> None:
    """Check that the layers chain and match the declared ports."""
    weights, biases = mlp.weights, mlp.biases
    if not weights or len(weights) != len(biases):
        raise ModelError("a model needs as many biases as weights, at least one of each")
    dtype = weights[0].dtype
    if dtype.name not in FLOAT_DTYPES:
        raise ModelError(f"weights must be one of {', '.join(FLOAT_DTYPES)}, not {dtype}")
    for name in (mlp.activation, mlp.output_activation):
        if name not in ACTIVATIONS:
            raise ModelError(f"unknown activation {name!r}")
    width = weights[0].shape[0] if weights[0].ndim == 2 else -1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.dtype != dtype or b.dtype != dtype:
            raise ModelError(f"layer {i}: every array must be {dtype} (W{i} {w.dtype}, b{i} {b.dtype})")
        if w.ndim != 2 or b.shape != (w.shape[1],) or w.shape[0] != width:
            raise ModelError(f"layer {i}: W{i} {list(w.shape)} and b{i} {list(b.shape)} do not chain from "
                             f"{width} inputs")
        width = w.shape[1]
    for port, size in ((mlp.input, weights[0].shape[0]), (mlp.output, width)):
        if port.shape[-1] != size:
            raise ModelError(f"{port.name} shape {list(port.shape)}: the last dimension must be {size}")
        if math.prod(d or 1 for d in port.shape) > MAX_UNCOMPRESSED:
            raise ModelError(f"{port.name} shape {list(port.shape)} is too large")


def affine_mlp(dtype: str | np.dtype[Any], shape: Sequence[int], bias: float = 1.0) -> Mlp:
    """A one-layer identity MLP computing ``x + bias`` on ``shape`` (the conformance kit's model)."""
    width = int(shape[-1])
    kind = np.dtype(dtype)
    return Mlp(weights=(np.eye(width, dtype=kind),), biases=(np.full(width, bias, dtype=kind),),
               activation="identity", output_activation="identity",
               input=Port("x", tuple(int(d) for d in shape)), output=Port("y", tuple(int(d) for d in shape)))
