"""MLServer runtime for the tests: the affine ONNX model (y = 2x + 1) on ONNX Runtime.

MLServer imports this module from the model's folder (model-settings.json:
``"implementation": "mlserver_affine.OnnxAffine"``, ``parameters.uri`` = the .onnx file).
"""

from __future__ import annotations

import onnxruntime as ort  # type: ignore[import-untyped]
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxAffine(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(uri, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        (y,) = self._session.run(None, {"x": x})
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
