"""Parsing the model flags of ``wasinn run``, in wasinn's, Wasmtime's and WasmEdge's syntax."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wasinn.enums import ExecutionTarget, GraphEncoding
from wasinn.errors import ConfigurationError
from wasinn.remote import parse_remote_flag, parse_remote_option

# Wasmtime's --nn-graph ENCODING::DIR looks for these files in DIR.
WASMTIME_DIR_FILES: dict[GraphEncoding, tuple[str, ...]] = {
    GraphEncoding.OPENVINO: ("model.xml", "model.bin"),
    GraphEncoding.ONNX: ("model.onnx",),
    GraphEncoding.PYTORCH: ("model.pt",),
    GraphEncoding.TENSORFLOWLITE: ("model.tflite",),
    GraphEncoding.GGML: ("model.gguf",),
}
SUFFIX_ENCODING = {".onnx": GraphEncoding.ONNX, ".xml": GraphEncoding.OPENVINO, ".tflite": GraphEncoding.TENSORFLOWLITE,
                   ".pt": GraphEncoding.PYTORCH, ".pt2": GraphEncoding.PYTORCH,
                   ".gguf": GraphEncoding.GGML}


@dataclass
class ModelFlag:
    """One named model from the command line."""

    name: str
    paths: list[Path]
    encoding: GraphEncoding | None = None
    target: ExecutionTarget | None = None
    config: dict[str, object] = field(default_factory=dict)
    #: A GGML preload whose file does not exist: not registered (WasmEdge starts the guest, whose
    #: load of it answers ModelNotFound, 103).
    missing: list[Path] = field(default_factory=list)


def parse_encoding(text: str) -> GraphEncoding | None:
    value = text.strip().lower()
    if value in ("autodetect", "auto", ""):
        return None
    aliases = {"tflite": "tensorflowlite", "ir": "openvino", "gguf": "ggml", "torch": "pytorch"}
    try:
        return GraphEncoding(aliases.get(value, value))
    except ValueError:
        choices = ", ".join(e.value for e in GraphEncoding)
        raise ConfigurationError(f"unknown encoding {text!r} (choose from {choices})") from None


def parse_target(text: str) -> ExecutionTarget:
    try:
        return ExecutionTarget(text.strip().lower())
    except ValueError:
        raise ConfigurationError(f"unknown target {text!r} (choose from cpu, gpu, tpu, auto)") from None


def parse_nn_graph(value: str) -> ModelFlag:
    """``NAME=PATH[,PATH...]`` (format sniffed) or Wasmtime's ``ENCODING::DIR`` (name = DIR's basename)."""
    if "::" in value:
        encoding_text, _, directory = value.partition("::")
        encoding = parse_encoding(encoding_text)
        folder = Path(directory)
        if not folder.is_dir():
            raise ConfigurationError(f"--nn-graph {value}: {folder} is not a directory")
        name = folder.resolve().name
        if encoding is not None and encoding in WASMTIME_DIR_FILES:
            paths = [folder / f for f in WASMTIME_DIR_FILES[encoding]]
            missing = [str(p) for p in paths if not p.is_file()]
            if missing:
                raise ConfigurationError(f"--nn-graph {value}: expected {', '.join(missing)}")
        else:
            paths = sorted(p for p in folder.iterdir() if p.suffix in SUFFIX_ENCODING or p.suffix == ".bin")
            if not paths:
                raise ConfigurationError(f"--nn-graph {value}: no model file in {folder}")
            xml = [p for p in paths if p.suffix == ".xml"]
            if xml:
                paths = [xml[0], xml[0].with_suffix(".bin")]
            else:
                paths = [p for p in paths if p.suffix != ".bin"][:1]
        return ModelFlag(name=name, paths=paths, encoding=encoding)
    name, sep, files = value.partition("=")
    if not sep or not name or not files:
        raise ConfigurationError(f"--nn-graph {value!r}: expected NAME=PATH[,PATH...] or ENCODING::DIR")
    paths = [Path(p) for p in files.split(",") if p]
    if len(paths) == 1 and paths[0].suffix == ".xml":
        paths.append(paths[0].with_suffix(".bin"))  # IR weights sit beside the XML
    for path in paths:
        if not path.is_file():
            raise ConfigurationError(f"--nn-graph {value}: {path} is not a file")
    return ModelFlag(name=name, paths=paths)


def parse_nn_preload(value: str) -> ModelFlag:
    """WasmEdge's ``NAME:ENCODING:TARGET:PATH[:PATH...]``."""
    parts = value.split(":")
    if len(parts) < 4 or not parts[0]:
        raise ConfigurationError(f"--nn-preload {value!r}: expected NAME:ENCODING:TARGET:PATH[:PATH...]")
    name, encoding_text, target_text, *files = parts
    paths = [Path(p) for p in files if p]
    encoding = parse_encoding(encoding_text)
    missing = [path for path in paths if not path.exists()]
    if missing and encoding is GraphEncoding.GGML:
        # WasmEdge's GGML plugin checks the file at the guest's load (ModelNotFound): do the same.
        return ModelFlag(name=name, paths=paths, encoding=encoding, target=parse_target(target_text),
                         missing=missing)
    for path in paths:
        if not path.is_file():
            raise ConfigurationError(f"--nn-preload {value}: {path} is not a file")
    return ModelFlag(name=name, paths=paths, encoding=encoding, target=parse_target(target_text))


def parse_dir(value: str) -> tuple[str, str]:
    """``HOST[::GUEST]`` → (host path, guest path); the guest path defaults to the host path."""
    host, sep, guest = value.partition("::")
    if not host:
        raise ConfigurationError(f"--dir {value!r}: expected HOST[::GUEST]")
    if not Path(host).is_dir():
        raise ConfigurationError(f"--dir {value}: {host} is not a directory")
    return host, guest if sep else host


def parse_env(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not key:
        raise ConfigurationError(f"--env {value!r}: expected KEY=VALUE")
    return key, val if sep else ""


def parse_prefer(value: str) -> tuple[str, list[str]]:
    """``FORMAT=backend1,backend2`` (or just ``backend1,backend2`` for every format)."""
    key, sep, names = value.partition("=")
    if not sep:
        key, names = "*", value
    return key.strip() or "*", [n.strip() for n in names.split(",") if n.strip()]


def parse_nn_remotes(remotes: list[str], options: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """``--nn-remote NAME=URI`` and ``--nn-remote-option NAME:KEY=VALUE`` -> {name: (uri, options)}."""
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for item in remotes:
        name, uri = parse_remote_flag(item)
        if name in found:
            raise ConfigurationError(f"--nn-remote {name}=...: {name} is given twice")
        found[name] = (uri, {})
    for item in options:
        name, key, value = parse_remote_option(item)
        if name not in found:
            raise ConfigurationError(f"--nn-remote-option {name}:{key}=...: no --nn-remote {name}=URI")
        found[name][1][key] = value
    return found
