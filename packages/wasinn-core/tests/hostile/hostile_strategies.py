"""Hypothesis strategies for hostile ABI calls (see :mod:`hostile_abi` for what they mean)."""

from __future__ import annotations

import json

from hostile_abi import (
    CANONICAL_MODELS,
    INTERESTING,
    LIVE,
    OK_LEN,
    OK_PTR,
    U32,
    Compute,
    Finalize,
    GetOutput,
    Grow,
    Handle,
    Infer,
    Init,
    Len,
    Load,
    LoadByName,
    Op,
    Ptr,
    SetInput,
    Trap,
    Unload,
)
from hypothesis import strategies as st

#: A small alphabet: the default text strategy builds a Unicode table that costs seconds per process.
ALPHABET = "abcxyz_-./\\ \0\x7f\u00e9\u2028\U0001f600"
text = st.text(alphabet=ALPHABET, max_size=8)

u32 = st.one_of(st.sampled_from(INTERESTING), st.integers(0, U32))
i32_any = st.one_of(u32, st.integers(-(1 << 31), -1))

# Mostly correct arguments with the odd corrupted one: a call must get past its first checks for the
# later ones to be exercised.
ptrs = st.one_of(
    *[st.just(OK_PTR)] * 6,
    st.builds(Ptr, st.just("raw"), i32_any),
    st.builds(Ptr, st.just("delta"), st.one_of(st.integers(-16, 16), st.sampled_from([1 << 31, -(1 << 20)]))),
    st.builds(Ptr, st.just("end"), st.integers(-8, 64)),
)
lens = st.one_of(
    *[st.just(OK_LEN)] * 6,
    st.builds(Len, st.just("raw"), i32_any),
    st.builds(Len, st.just("delta"), st.one_of(st.integers(-8, 8), st.sampled_from([1 << 31, U32]))),
)
handles = st.one_of(
    *[st.just(LIVE)] * 4,
    st.builds(Handle, st.just("live"), st.integers(0, 8)),
    st.builds(Handle, st.just("raw"), i32_any),
)
enum_numbers = st.one_of(st.integers(0, 8), st.sampled_from(INTERESTING), i32_any)


def _mutate(args: tuple[bytes, int, int, int]) -> bytes:
    data, how, position, value = args
    position %= max(len(data), 1)
    if how == 0:  # truncate
        return data[:position]
    if how == 1:  # flip one bit
        return data[:position] + bytes([data[position] ^ (1 << (value % 8))]) + data[position + 1:]
    if how == 2:  # overwrite a byte
        return data[:position] + bytes([value & 0xFF]) + data[position + 1:]
    if how == 3:  # insert bytes
        return data[:position] + bytes([value & 0xFF]) * (value % 7 + 1) + data[position:]
    return data + bytes([value & 0xFF]) * (value % 5)  # append garbage


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 40), 1 << 40), st.floats(allow_nan=True),
              text),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children,
                                                                                 max_size=4)),
    max_leaves=12,
)
fake_specs = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.one_of(json_values, st.lists(st.fixed_dictionaries(
            {"name": text, "dtype": st.sampled_from(["f32", "u8", "f64", "i64", "bf16", "x"]),
             "shape": st.lists(st.one_of(st.none(), st.integers(-2, 70000)), max_size=4)}), max_size=3)),
        "outputs": st.one_of(json_values, st.lists(st.fixed_dictionaries(
            {"name": text, "dtype": st.sampled_from(["f32", "u8", "f16", "i32"]),
             "shape": st.lists(st.one_of(st.none(), st.integers(-2, 70000)), max_size=4)}), max_size=3)),
        "scale": json_values,
        "bias": json_values,
        "fail": st.sampled_from(["load", "init", "compute", "set_input", "get_output", "nothing"]),
    },
)

model_bytes = st.one_of(
    st.sampled_from(list(CANONICAL_MODELS.values())),
    st.sampled_from(list(CANONICAL_MODELS.values())),
    st.tuples(st.sampled_from(list(CANONICAL_MODELS.values())), st.integers(0, 4), st.integers(0, 1 << 16),
              st.integers(0, 255)).map(_mutate),
    fake_specs.map(lambda spec: b"WTST" + json.dumps(spec).encode()),
    st.binary(max_size=64),
    st.sampled_from([
        b"", b"WTST", b"WTST{}", b"WTST[]", b"WTSTnull", b"\0\0\0\0TFL3" + bytes(32), b"GGUF\3\0\0\0",
        b"PK\x03\x04data.pkl", b'<?xml version="1.0"?><net name="x" version="11"></net>',
        b"\x08\x07\x3a\x00",  # ONNX: ir_version 7, an empty graph
        b"WTST" + b" " * 70_000,  # over the harness's max_model_bytes
    ]),
)

names = st.one_of(
    st.just(b"m"), st.just(b"dyn"),
    st.sampled_from([b"m", b"m\0", b"dyn", b"../m", b"./m", b"m/", b"/m", b"M", b" m", b"m\0\0", b"m\0x",
                     b"/etc/passwd", b"..", b"", b"\0", b"\xff\xfe", b"\xc3", b"m" * 4096, b"m" * 4097,
                     "ｍ".encode()]),
    st.binary(max_size=24),
)
configs = st.one_of(
    st.none(), st.none(),
    st.sampled_from([b"{}", b'{"a": 1}', b"[]", b"1", b"null", b'{"a":', b"\xff", b"{}\0", b'{"threads": 1e999}',
                     b"[" * 50_000 + b"]" * 50_000, b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"]),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=24),
)
dims = st.one_of(
    st.none(), st.none(),
    st.lists(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 16, 1 << 16, 1 << 31, U32]), st.integers(0, U32)), max_size=6),
    st.lists(st.sampled_from([1, 2, U32]), min_size=60, max_size=70),
).map(lambda d: tuple(d) if d is not None else None)

loads = st.builds(Load, builders=st.lists(model_bytes, min_size=0, max_size=3).map(tuple), encoding=enum_numbers,
                  target=enum_numbers, count=lens, array=ptrs, pointers=st.lists(ptrs, max_size=2).map(tuple),
                  lengths=st.lists(lens, max_size=2).map(tuple), out=ptrs)
good_loads = st.builds(Load, builders=st.sampled_from(list(CANONICAL_MODELS.values())).map(lambda b: (b,)),
                       encoding=st.sampled_from([None, 5, 6]))
load_by_names = st.builds(LoadByName, name=names, config=configs, name_ptr=ptrs, name_len=lens, config_ptr=ptrs,
                          config_len=lens, out=ptrs)
inits = st.builds(Init, graph=handles, out=ptrs)
set_inputs = st.builds(SetInput, context=handles, index=st.one_of(st.integers(0, 2), u32), dims=dims,
                       type_number=st.one_of(st.none(), st.integers(0, 8), u32), fill=st.integers(0, 255),
                       data_len=lens, rank=lens, dims_ptr=ptrs, data_ptr=ptrs, record=ptrs,
                       padding=st.one_of(st.just(b"\0\0\0"), st.binary(min_size=3, max_size=3)))
computes = st.builds(Compute, context=handles)
get_outputs = st.builds(GetOutput, context=handles, index=st.one_of(st.integers(0, 2), u32), out=ptrs,
                        out_max=lens, written=ptrs)

ops: st.SearchStrategy[Op] = st.one_of(
    loads, good_loads, good_loads, load_by_names, inits, inits, set_inputs, set_inputs, computes, get_outputs,
    get_outputs, st.builds(Unload, handles), st.builds(Finalize, handles), st.builds(Infer, handles),
    st.just(Trap()), st.just(Grow()),
)
op_sequences = st.lists(ops, min_size=1, max_size=30)
