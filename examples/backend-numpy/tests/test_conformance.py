"""wasinn's conformance kit against the numpy backend: the lines a backend author adds."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

import numpy as np
from wasinn_backend_numpy.backend import TENSOR_TYPES, NumpyBackend
from wasinn_backend_numpy.npz import affine_mlp, dump_mlp

from wasinn import ExecutionTarget, TensorType
from wasinn.testing import BackendConformance


def _archive(members: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in members.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=True)
            archive.writestr(name, member.getvalue())
    return buffer.getvalue()


class TestNumpyBackend(BackendConformance):
    backend = "numpy"  # the entry-point name
    tensor_types = TENSOR_TYPES  # f16, f32, f64
    targets = (ExecutionTarget.CPU,)
    encoding = None  # npz-mlp is a format of our own: guests load it with autodetect
    heavy_modules = ("onnx", "onnxruntime")  # only the export script needs them

    def make_model(self, dtype: TensorType, shape: tuple[int, ...]) -> Sequence[bytes]:
        return [dump_mlp(affine_mlp(dtype.numpy_dtype, shape, bias=1.0))]  # x @ I + 1 = x + 1

    def bad_models(self, dtype: TensorType, shape: tuple[int, ...]) -> dict[str, Sequence[bytes]]:
        # The kit's corruptions mostly fail format detection; these get past it, to reach load.
        good = np.load(io.BytesIO(self.make_model(dtype, shape)[0]))
        members = {f"{name}.npy": good[name] for name in good.files}
        chained_wrong = {**members, "b0.npy": np.zeros(shape[-1] + 1, dtype.numpy_dtype)}
        pickled = {**members, "W0.npy": np.array([object()], dtype=object)}
        integer = {**members, "W0.npy": members["W0.npy"].astype(np.int32)}
        return {
            **super().bad_models(dtype, shape),
            "layers that do not chain": [_archive(chained_wrong)],
            "a pickled object array": [_archive(pickled)],
            "integer weights": [_archive(integer)],
        }

    def live_objects(self) -> int:
        return NumpyBackend.live_objects()
