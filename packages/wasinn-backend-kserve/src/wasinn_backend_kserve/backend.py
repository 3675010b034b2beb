"""The hooks: score remote models, load = readiness + metadata, infer on the server."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

import numpy as np

from wasinn import (
    Context,
    Decline,
    ErrorCode,
    Graph,
    Hardware,
    ModelDescription,
    ModelFormat,
    Score,
    Tensor,
    WasiNnError,
)
from wasinn.errors import ConfigurationError
from wasinn_backend_kserve.config import EndpointConfig, parse_config
from wasinn_backend_kserve.endpoint import Endpoint
from wasinn_backend_kserve.protocol import DATATYPES, V2_NAME, InputTensor, ModelMeta, check_outputs
from wasinn_backend_kserve.wire import encode_infer_request

log = logging.getLogger("wasinn.kserve")
SCORE = 100  # the user mapped this name to this server: nobody else may serve it


@dataclass
class RemoteGraph:
    endpoint: Endpoint
    meta: ModelMeta


@dataclass
class RemoteContext:
    inputs: list[InputTensor | None]
    outputs: list[np.ndarray] | None = None
    output_names: list[str] = field(default_factory=list)
    message: bytes | None = None  # a gRPC request encoded by set_input (single-input models)


def _config(model: ModelDescription) -> EndpointConfig | Decline:
    if model.remote is None or model.format != ModelFormat.REMOTE:
        return Decline("serves remote models only (--nn-remote); this model is local")
    if model.guest_config:
        # Where and how to reach a server is the host's to say, never the guest's.
        return Decline(f"a remote model takes no config from the guest (got {sorted(model.guest_config)})",
                       ErrorCode.INVALID_ARGUMENT)
    try:
        config = parse_config(model.remote)
    except ConfigurationError as exc:
        return Decline(str(exc), ErrorCode.INVALID_ARGUMENT)
    if (config.grpc or config.transport == "grpc") and importlib.util.find_spec("grpc") is None:
        return Decline(f"{config.shown} needs grpcio: pip install 'wasinn-backend-kserve[grpc]'",
                       ErrorCode.UNSUPPORTED_OPERATION)
    return config


def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline:
    config = _config(model)
    if isinstance(config, Decline):
        return config
    transport = Endpoint.describe_static(config)
    return Score(SCORE, f"the host mapped {model.remote.name!r} to {config.shown}; "  # type: ignore[union-attr]
                        f"model {config.model!r}{f' version {config.version}' if config.version else ''} "
                        f"over {transport}; the server picks its device", device=config.shown)


def load(model: ModelDescription, hw: Hardware) -> Graph:
    config = _config(model)
    if isinstance(config, Decline):
        raise WasiNnError(config.code, config.reason)
    endpoint = Endpoint(config)
    try:
        return _load(config, endpoint)
    except BaseException:
        endpoint.release()  # a failed load keeps no connections
        raise


def unload(graph: Graph) -> None:
    state: RemoteGraph = graph.state
    state.endpoint.release()


def _load(config: EndpointConfig, endpoint: Endpoint) -> Graph:
    endpoint.check_ready()
    meta = endpoint.metadata()
    if not meta.inputs or not meta.outputs:
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"{config.shown}: the model's metadata lists no inputs or no "
                                                   "outputs: cannot tell the tensor layout")
    for tensor in (*meta.inputs, *meta.outputs):
        if tensor.datatype not in DATATYPES:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"{config.shown}: tensor {tensor.name!r} is "
                                                               f"{tensor.datatype}, which wasi-nn cannot carry")
    log.info("remote %s: %s ready, inputs %s, outputs %s", config.name, config.shown,
             ", ".join(t.spec().describe() for t in meta.inputs), ", ".join(t.spec().describe() for t in meta.outputs))
    return Graph(inputs=[t.spec() for t in meta.inputs], outputs=[t.spec() for t in meta.outputs],
                 device=f"remote:{config.shown}", state=RemoteGraph(endpoint, meta))


def init_execution_context(graph: Graph) -> Context:
    state: RemoteGraph = graph.state
    return Context(graph, state=RemoteContext(inputs=[None] * len(state.meta.inputs),
                                              output_names=[t.name for t in state.meta.outputs]))


def set_input(context: Context, index: int, tensor: Tensor) -> None:
    graph: RemoteGraph = context.graph.state
    want = graph.meta.inputs[index]
    spec = context.graph.inputs[index]  # made once at load (want.spec() each call cost ~1 µs)
    if spec.dtype is not tensor.dtype or not spec.accepts_shape(tensor.shape):
        got = f"{tensor.dtype.value}[{','.join(map(str, tensor.shape))}]"
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index} ({want.name!r}) of {graph.endpoint.config.shown} "
                                                      f"is {spec.describe()}, got {got}")
    state: RemoteContext = context.state
    state.outputs = None
    config = graph.endpoint.config
    if graph.endpoint.grpc_infer and len(state.inputs) == 1:
        # One input over gRPC: the whole request is known now, so the guest's bytes are copied once,
        # straight into the message that is sent (no copy kept, then joined at compute).
        view = InputTensor(want.name, V2_NAME[tensor.dtype], tensor.shape, tensor.data)
        state.message = encode_infer_request(config.model, config.version, [view], state.output_names)
        state.inputs[index] = InputTensor(want.name, view.datatype, tensor.shape, b"")
        return
    # The guest's view is valid only during this call: one copy, sent from here as it is.
    state.inputs[index] = InputTensor(want.name, V2_NAME[tensor.dtype], tensor.shape, bytes(tensor.data))


def compute(context: Context) -> None:
    graph: RemoteGraph = context.graph.state
    state: RemoteContext = context.state
    missing = [graph.meta.inputs[i].name for i, t in enumerate(state.inputs) if t is None]
    if missing:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"compute before set_input of {', '.join(missing)}")
    if state.message is not None:
        answer = graph.endpoint.infer_message(state.message)
    else:
        answer = graph.endpoint.infer([t for t in state.inputs if t is not None], state.output_names)
    try:
        state.outputs = check_outputs(graph.meta, answer)
    except WasiNnError as exc:
        log.warning("remote %s: %s", graph.endpoint.config.name, exc.message)
        raise


def get_output(context: Context, index: int) -> np.ndarray:
    state: RemoteContext = context.state
    if state.outputs is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "get_output before a successful compute")
    return state.outputs[index]
