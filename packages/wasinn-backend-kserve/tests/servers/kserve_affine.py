"""KServe's own ``kserve.ModelServer`` for the tests, on 127.0.0.1 only, serving:

* ``affine``: the affine ONNX model (y = 2x + 1) on ONNX Runtime;
* ``slow``: the same after sleeping ``SLOW_SECONDS`` (timeouts);
* ``broken``: raises (HTTP 500 / gRPC INTERNAL);
* ``liar``: answers a wrong shape; ``wrongtype``: answers INT64 where the metadata says FP32.

Usage: ``python kserve_affine.py MODEL.onnx HTTP_PORT GRPC_PORT``. ModelServer binds 0.0.0.0 (REST)
and [::] (gRPC) by default: the two server classes below bind 127.0.0.1 instead.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures
from typing import Any

import kserve
import kserve.model_server as model_server
import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import uvicorn
from grpc import aio
from kserve import InferOutput, InferRequest, InferResponse
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.rest.server import RESTServer

LOOPBACK = "127.0.0.1"
SLOW_SECONDS = 3.0
MESSAGE_LIMIT = 512 * 1024 * 1024  # the 4 MB gRPC default refuses the 16/64 MB tensors


class LoopbackREST(RESTServer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = LOOPBACK
        self._server = uvicorn.Server(self.config)


class LoopbackGRPC(GRPCServer):  # type: ignore[misc]
    async def start(self, max_workers: int) -> None:
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
                                  options=[("grpc.max_send_message_length", MESSAGE_LIMIT),
                                           ("grpc.max_receive_message_length", MESSAGE_LIMIT)])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{LOOPBACK}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


model_server.RESTServer = LoopbackREST
model_server.GRPCServer = LoopbackGRPC


class Affine(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session = ort.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def answer(self, y: np.ndarray) -> tuple[np.ndarray, str]:
        return y, "FP32"

    async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> InferResponse:
        if self.name == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if self.name == "broken":
            raise RuntimeError("this model always fails")
        x = payload.inputs[0].as_numpy()
        (y,) = self.session.run(None, {"x": x})
        if self.name == "liar":
            y = y.reshape(-1)[: y.size - 1] if y.size > 1 else np.zeros(3, np.float32)
        datatype = "FP32"
        if self.name == "wrongtype":
            y, datatype = y.astype(np.int64), "INT64"
        out = InferOutput(name="y", shape=list(y.shape), datatype=datatype)
        out.set_data_from_numpy(y, binary_data=payload.use_binary_outputs)
        # A JSON request may carry no id; KServe's response model needs a string.
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[out],
                             use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)


def main() -> None:
    path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    models = [Affine(name, path) for name in ("affine", "slow", "broken", "liar", "wrongtype")]
    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, workers=1, enable_docs_url=False)
    server.start(models)


if __name__ == "__main__":
    main()
