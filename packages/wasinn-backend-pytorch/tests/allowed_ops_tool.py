"""Regenerate ``wasinn_backend_pytorch/_allowed_ops.py`` from the installed torch's operator registry.

    python packages/wasinn-backend-pytorch/tests/allowed_ops_tool.py > \\
        packages/wasinn-backend-pytorch/src/wasinn_backend_pytorch/_allowed_ops.py

Then review the diff: the file is the whitelist, and a name enters it only by that review. The rule
that proposes names: an ``aten`` operator every overload of which takes and returns only tensors,
numbers, dtypes, layouts, devices, memory formats and lists/tuples/optionals/dicts of them; ``str``
only for selector arguments (``mode``, ``rounding_mode``, ...) and for the string methods
TorchScript compiles Python's ``str`` methods to; no ``Storage``, ``Stream``, ``Future``, ``RRef``,
``Any``, ``Capsule`` or class objects; public names only (a leading underscore is torch-internal,
admitted one by one in ``PRIVATE``). ``EXCLUDED`` names pass that rule and still reach outside a
model's own tensors (host files, stderr, global state, pinned memory) or are backend internals a
model never calls.
"""

from __future__ import annotations

import collections
import re
import sys
import textwrap

UNSAFE_TYPES = {"Any", "Storage", "Stream", "AnyClassType", "Capsule", "Future", "RRef", "Await", "AnyListType",
                "AnyTupleType", "Dimname", "QScheme"}
# str arguments that select a mode, or belong to string methods (the model's own strings).
STR_OPS_OK = {"Float", "Int", "__interpolate", "__upsample", "any", "bin", "capitalize", "center", "chr", "conv1d",
              "conv2d", "conv3d", "count", "device", "div", "div_", "divide", "divide_", "einsum", "endswith",
              "expandtabs", "find", "format", "ge", "gelu", "gelu_", "get_autocast_dtype", "gt", "hex", "index",
              "index_reduce", "index_reduce_", "isalnum", "isalpha", "isdecimal", "isdigit", "isidentifier", "islower",
              "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "le", "linalg_cond", "linalg_eigh",
              "linalg_eigvalsh", "linalg_lstsq", "linalg_matrix_norm", "linalg_norm", "linalg_qr", "linalg_svd",
              "linalg_svdvals", "ljust", "lower", "lstrip", "lt", "meshgrid", "nanquantile", "oct", "ord", "pad",
              "pad_sequence", "partition", "percentFormat", "quantile", "replace", "rfind", "rindex", "rjust",
              "rpartition", "rsplit", "rstrip", "scatter", "scatter_", "scatter_reduce", "scatter_reduce_",
              "searchsorted", "segment_reduce", "split", "splitlines", "startswith", "stft", "strip", "swapcase",
              "title", "upper", "zfill", "fft_fft", "fft_fft2", "fft_fftn", "fft_hfft", "fft_hfft2", "fft_hfftn",
              "fft_ifft", "fft_ifft2", "fft_ifftn", "fft_ihfft", "fft_ihfft2", "fft_ihfftn", "fft_irfft", "fft_irfft2",
              "fft_irfftn", "fft_rfft", "fft_rfft2", "fft_rfftn", "remove", "Delete", "__contains__", "__getitem__",
              "eq", "ne", "len", "list", "sort", "sorted", "str", "dict", "get", "pop", "setdefault", "update", "items",
              "keys", "values", "clear", "copy", "popitem", "slice", "_set_item", "_convolution_mode", "add",
              "_assert_async", "_assert_scalar"}
# Reviewed one by one: ``len(Any[])`` is the length of a list.
GENERIC_OK = {"len"}
EXCLUDED = {
    # host files, the host's stderr, threads and futures
    "save", "from_file", "warn", "wait", "to_here", "local_value", "owner", "owner_name", "is_owner",
    "confirmed_by_owner", "record_stream",
    # process- or thread-wide state, storages, pinned host memory, devices a guest did not choose
    "set_grad_enabled", "set_data", "set", "set_", "pin_memory", "cuda", "manual_seed", "seed", "initial_seed",
    "Generator", "sparse_resize", "sparse_resize_", "sparse_resize_and_clear", "sparse_resize_and_clear_",
    "qscheme", "dequantize",
}
EXCLUDED_PREFIXES = ("miopen_", "mkldnn_", "cudnn_", "mps_", "fbgemm_", "_")
EXCLUDED_SUFFIXES = ("_backward",)
# torch-internal operators that scripted and exported models of torch's own nn modules call.
PRIVATE = {
    "_convolution", "_convolution_mode", "_native_multi_head_attention", "_transformer_encoder_layer_fwd",
    "_nested_tensor_from_mask", "_nested_tensor_from_mask_left_aligned", "_upsample_bicubic2d_aa",
    "_upsample_bilinear2d_aa", "_upsample_lanczos2d_aa", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
    "_upsample_nearest_exact3d",
    "_assert_scalar", "_assert_tensor_metadata", "_assert_async", "_set_item", "_shape_as_tensor", "_softmax",
    "_log_softmax", "_to_copy", "_unsafe_view", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "_native_batch_norm_legit", "_scaled_dot_product_flash_attention_for_cpu",
    "_safe_softmax", "_dim_arange", "_pack_padded_sequence", "_pad_packed_sequence", "_reshape_from_tensor",
    "_weight_norm", "_unique2", "_cast_Float", "_cast_Long", "_cast_Int", "_cast_Half", "_cast_Double",
    "_cast_Byte", "_cast_Char", "_cast_Short", "_infer_size",
}
PRIM = {
    "NumToTensor", "RaiseException", "unchecked_cast", "unchecked_unwrap_optional", "device", "dtype", "layout",
    "requires_grad", "is_nested", "is_cuda", "is_cpu", "is_meta", "is_mkldnn", "is_quantized", "is_sparse",
    "is_sparse_csr", "is_xpu", "is_mps", "is_vulkan", "is_xla", "is_ipu", "is_maia", "is_mtia", "type", "data",
    "grad", "index", "itemsize", "nbytes", "max", "min", "abs", "tolist", "rangelist", "TupleIndex", "EnumName",
    "EnumValue", "shape", "name", "StringIndex",
}


def _atoms(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)) - {"Optional", "List", "Tuple", "Dict", "Union"}


def proposed() -> tuple[list[str], list[str]]:
    import torch

    overloads: dict[str, list[object]] = collections.defaultdict(list)
    for schema in torch._C._jit_get_all_schemas():
        overloads[schema.name].append(schema)
    aten, prim = [], []
    for name, schemas in overloads.items():
        namespace, op = name.split("::", 1)
        if namespace == "prim":
            if op in PRIM:
                prim.append(op)
            continue
        if namespace != "aten" or op in EXCLUDED or op.endswith(EXCLUDED_SUFFIXES):
            continue
        if op.startswith(EXCLUDED_PREFIXES) and not op.startswith("__") and op not in PRIVATE:
            continue
        types: set[str] = set()
        for schema in schemas:
            for argument in [*schema.arguments, *schema.returns]:  # type: ignore[attr-defined]
                types |= _atoms(str(argument.type))
        if (types & UNSAFE_TYPES and op not in GENERIC_OK) or ("str" in types and op not in STR_OPS_OK):
            continue
        aten.append(op)
    return sorted(aten), sorted(prim)


def render(aten: list[str], prim: list[str]) -> str:
    def block(names: list[str]) -> str:
        return textwrap.fill(" ".join(names), width=116, initial_indent="    ", subsequent_indent="    ",
                             break_on_hyphens=False)

    version = __import__("torch").__version__
    return (f'"""The operators a guest\'s TorchScript or torch.export model may call (generated by\n'
            f"tests/allowed_ops_tool.py from torch {version}, then reviewed: see that file for the\n"
            f"rule).\n\n"
            f"Anything not named here is refused before torch loads the model, and again in the loaded\n"
            f'graphs.\n"""\n\n'
            f"from __future__ import annotations\n\n"
            f"#: ``aten::NAME`` (TorchScript source: ``torch.NAME`` / ``ops.aten.NAME``; export:\n"
            f"#: ``torch.ops.aten.NAME.OVERLOAD``).\n"
            f'ATEN: frozenset[str] = frozenset("""\n{block(aten)}\n""".split())\n\n'
            f"#: ``prim::NAME`` operators a model may call (``ops.prim.NAME``).\n"
            f'PRIM: frozenset[str] = frozenset("""\n{block(prim)}\n""".split())\n')


if __name__ == "__main__":
    sys.stdout.write(render(*proposed()))
