"""Pieces checked on their own: the hand-written gRPC codec against the generated classes that ship
with KServe, URI/option parsing, ranking (a local model is never sent anywhere), and one
connection pool shared by contexts on many threads (against the real KServe server)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as kserve_pb2
from kserve_servers import Server
from wasinn_backend_kserve import backend, wire
from wasinn_backend_kserve import endpoint as endpoint_module
from wasinn_backend_kserve.config import parse_config
from wasinn_backend_kserve.endpoint import transport_for
from wasinn_backend_kserve.protocol import InputTensor
from wasinn_backend_kserve.rest import RestTransport

import wasinn
from wasinn import ErrorCode, ModelFormat, Tensor, WasiNnError
from wasinn.errors import ConfigurationError
from wasinn.remote import make_remote

# KServe's generated classes (MLServer's define the same proto symbols, so one process cannot import
# both; MLServer's side is covered by the gRPC runs against the real MLServer).
PB2 = pytest.mark.parametrize("pb2", [kserve_pb2], ids=["kserve"])


@PB2
def test_infer_request_encodes_as_the_generated_class_reads_it(pb2: object) -> None:
    x = np.arange(12, dtype="<f4").reshape(3, 4)
    ids = np.array([-1, 2**40], dtype="<i8")
    data = wire.encode_infer_request("affine", "2", [InputTensor("x", "FP32", (3, 4), x.tobytes()),
                                                     InputTensor("ids", "INT64", (2,), ids.tobytes())], ["y"])
    request = pb2.ModelInferRequest.FromString(data)  # type: ignore[attr-defined]
    assert request.model_name == "affine" and request.model_version == "2"
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("x", "FP32", [3, 4]),
                                                                            ("ids", "INT64", [2])]
    assert [o.name for o in request.outputs] == ["y"]
    assert request.raw_input_contents[0] == x.tobytes() and request.raw_input_contents[1] == ids.tobytes()


@PB2
def test_infer_response_decodes_raw_and_typed_contents(pb2: object) -> None:
    y = np.arange(8, dtype="<f4") / 3
    raw = pb2.ModelInferResponse(model_name="affine", outputs=[  # type: ignore[attr-defined]
        pb2.ModelInferResponse.InferOutputTensor(name="y", datatype="FP32", shape=[2, 4])],  # type: ignore[attr-defined]
        raw_output_contents=[y.tobytes()])
    (out,) = wire.decode_infer_response(raw.SerializeToString())
    assert (out.name, out.datatype, out.shape) == ("y", "FP32", (2, 4))
    assert bytes(out.raw) == y.tobytes()  # type: ignore[arg-type]
    typed = pb2.ModelInferResponse(outputs=[  # type: ignore[attr-defined]
        pb2.ModelInferResponse.InferOutputTensor(  # type: ignore[attr-defined]
            name="y", datatype="FP32", shape=[2, 4], contents=pb2.InferTensorContents(fp32_contents=y.tolist())),
        pb2.ModelInferResponse.InferOutputTensor(  # type: ignore[attr-defined]
            name="n", datatype="INT64", shape=[2], contents=pb2.InferTensorContents(int64_contents=[-5, 7]))])
    y_out, n_out = wire.decode_infer_response(typed.SerializeToString())
    np.testing.assert_array_equal(np.asarray(y_out.values, np.float32), y)
    assert list(n_out.values) == [-5, 7] and n_out.raw is None


@PB2
def test_metadata_and_readiness_decode(pb2: object) -> None:
    meta = pb2.ModelMetadataResponse(name="affine", versions=["1"], platform="onnx", inputs=[  # type: ignore[attr-defined]
        pb2.ModelMetadataResponse.TensorMetadata(name="x", datatype="FP32", shape=[-1, 4])],  # type: ignore[attr-defined]
        outputs=[pb2.ModelMetadataResponse.TensorMetadata(name="y", datatype="FP32", shape=[-1, 4])])  # type: ignore[attr-defined]
    assert wire.decode_metadata(meta.SerializeToString()) == {
        "name": "affine", "versions": ["1"], "platform": "onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]}
    assert wire.decode_ready(pb2.ServerReadyResponse(ready=True).SerializeToString())  # type: ignore[attr-defined]
    assert not wire.decode_ready(pb2.ModelReadyResponse(ready=False).SerializeToString())  # type: ignore[attr-defined]
    request = pb2.ModelReadyRequest.FromString(wire.encode_model_request("affine", "3"))  # type: ignore[attr-defined]
    assert (request.name, request.version) == ("affine", "3")


@pytest.mark.parametrize("junk", [b"\xff", b"\x0a\x05ab", b"\x2a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                                  b"\x0b"])
def test_malformed_protobuf_is_a_runtime_error(junk: bytes) -> None:
    with pytest.raises(WasiNnError) as info:
        wire.decode_infer_response(junk)
    assert info.value.code is ErrorCode.RUNTIME_ERROR


@pytest.mark.parametrize(("uri", "model", "version", "prefix", "port"), [
    ("http://127.0.0.1:8000/v2/models/affine", "affine", "", "", 8000),
    ("https://h/serving/v2/models/affine/versions/3", "affine", "3", "/serving", 443),
    ("grpc://10.0.0.5:8001/affine", "affine", "", "", 8001),
    ("grpc://10.0.0.5:8001/v2/models/affine/versions/2", "affine", "2", "", 8001),
])
def test_uris(uri: str, model: str, version: str, prefix: str, port: int) -> None:
    config = parse_config(make_remote("a", uri))
    assert (config.model, config.version, config.prefix, config.port) == (model, version, prefix, port)


@pytest.mark.parametrize(("uri", "options", "words"), [
    ("ftp://h/v2/models/a", {}, "use http"),
    ("http://h:1/models/a", {}, "expected a path"),
    ("grpc://h/a", {}, "needs a port"),
    ("http://h:1/v2/models/a", {"transport": "grpc"}, "grpc://"),
    ("http://h:1/v2/models/a", {"tls-ca": "/nonexistent.pem"}, "not a readable file"),
    ("http://h:1/v2/models/a", {"token": "x", "token-env": "Y"}, "one of"),
    ("http://h:1/v2/models/a", {"retries": "-1"}, "retries"),
])
def test_bad_uris_and_options(uri: str, options: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        parse_config(make_remote("a", uri, options))


def test_a_local_model_is_declined_and_never_loaded(affine_file: Path) -> None:
    host = wasinn.WasiNnHost(backend="kserve")
    host.register_model("affine", affine_file)
    with pytest.raises(WasiNnError) as info:
        host.load_named("affine")
    assert info.value.code is ErrorCode.INVALID_ENCODING
    model = wasinn.ModelDescription(format=ModelFormat.REMOTE, builders=(affine_file.read_bytes(),))
    decline = backend.can_handle(model, wasinn.Hardware(cpu=wasinn.Cpu("x86_64", "", "", 1, frozenset())))
    assert isinstance(decline, wasinn.Decline)  # REMOTE in name only, with no remote: declined


def test_a_guest_config_cannot_redirect_a_remote_model(ks_server: Server) -> None:
    host = wasinn.WasiNnHost()
    host.register_remote("affine", ks_server.rest())
    with pytest.raises(WasiNnError) as info:
        host.load_named("affine", {"uri": "http://evil.invalid/v2/models/x"}, share_variants=False)
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


def test_contexts_on_many_threads_share_one_pool(ks_server: Server) -> None:
    host = wasinn.WasiNnHost()
    host.register_remote("affine", ks_server.rest(), options={"pool-size": "4"})
    loaded = host.load_named("affine")
    transport = transport_for(loaded.graph.state.endpoint.config)
    assert isinstance(transport, RestTransport)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            context = backend.init_execution_context(loaded.graph)
            for i in range(20):
                x = np.full((2, 4), seed * 100 + i, np.float32)
                backend.set_input(context, 0, Tensor.from_numpy(x))
                backend.compute(context)
                np.testing.assert_array_equal(backend.get_output(context, 0), 2 * x + 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # 120 inferences (and the load's 3 GETs) over a handful of kept-alive connections.
    assert 1 <= transport.opened <= 6 + 1
    host.close()  # the last graph using the endpoint is released: its connections close
    assert loaded.graph.state.endpoint.config.key not in endpoint_module._shared
    assert transport._idle.empty()
