"""A backend that forgot most of its hooks: discovery must list it as unavailable, naming them."""

from wasinn import BackendInfo, ModelFormat, hookimpl


@hookimpl
def backend_info() -> BackendInfo:
    return BackendInfo(runtime="nothing", runtime_version=None, formats=(ModelFormat.ONNX,))
