"""Whitelists a guest's PyTorch archive must pass before torch sees a byte of it, and that the
program torch loaded must pass again.

A TorchScript archive or a ``.pt2`` is a program, and torch runs parts of it while *loading*:
TorchScript calls each object's ``__setstate__`` from the archive's own source; ``torch.export.load``
hands every symbolic-shape string to ``sympy.sympify`` (an ``eval``), unpickles what the archive
marks as pickled, and dlopens AOTInductor libraries it finds inside. So nothing is checked by
looking for bad things: each part of the archive must be one of the shapes torch itself writes for
a model, and anything else is refused (:class:`UnsafeModel`, ``invalid_argument`` to the guest).

* **Layout.** Every entry name must be one torch writes (:data:`TORCHSCRIPT_ENTRIES`,
  :data:`EXPORT_ENTRIES`): no AOTInductor libraries, no legacy layouts, no stray files.
* **Pickles** (TorchScript): only the globals TorchScript writes for tensors and lists, and classes
  the archive's own code defines (:data:`PICKLE_GLOBALS`). ``.pt2`` weights and constants must be raw
  tensor payloads; the sample inputs (torch unpickles them with a code-running fallback) are dropped.
* **TorchScript code** is parsed with :mod:`ast` (after a token check, so that Python and
  TorchScript read the same text) and must use only the statements TorchScript's printer emits;
  every call must reach an allowed operator (:mod:`._allowed_ops`), a few builtins, or a function or
  method the archive defines. No ``__setstate__``: no code runs during ``torch.jit.load``.
* **Symbolic shapes** (``.pt2``): each ``expr_str`` and range-constraint key must match
  :func:`check_sym_expr`'s grammar: symbols, bounded integers, ``+ - * //``, and the sympy
  constructors torch writes (``Symbol``, ``Integer``, ``Add``, ``Mul``, ``Mod``, ``FloorDiv``,
  ``Min``, ``Max``, ...). Guard code (``exec``'d by torch when sample inputs are present) is dropped.
* **Graph targets** (``.pt2``): each node calls an allowed ``aten`` operator, one of torch's
  symbolic-integer helpers, or an allowed higher-order operator.
"""

from __future__ import annotations

import ast
import io
import json
import pickletools
import re
import tokenize
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from wasinn_backend_pytorch._allowed_ops import ATEN, PRIM

#: More entries than this is no model (bounds the work done on a hostile zip).
MAX_ENTRIES = 100_000


class UnsafeModel(ValueError):
    """The archive is refused: it is not a shape torch writes for a model. The message says why."""


# ---------------------------------------------------------------------------------------------------
# The archive


def _archive(data: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnsafeModel(f"not a readable zip archive: {exc}") from None
    if len(archive.infolist()) > MAX_ENTRIES:
        raise UnsafeModel(f"more than {MAX_ENTRIES} entries")
    # torch writes its archives uncompressed; the sizes the entries declare are what the check
    # and torch allocate, so they may not add up to much more than the archive itself.
    declared = sum(info.file_size for info in archive.infolist())
    if declared > 2 * len(data) + (1 << 20):
        raise UnsafeModel(f"its entries declare {declared} bytes uncompressed, from a {len(data)}-byte archive")
    return archive


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except Exception as exc:  # bad CRC, unsupported compression, truncated member
        raise UnsafeModel(f"entry {name!r} cannot be read: {exc}") from None


def _entries(archive: zipfile.ZipFile, allowed: re.Pattern[str], kind: str) -> tuple[str, list[str]]:
    """The archive's root folder and its entry names, each checked against ``allowed`` (relative to the root)."""
    names = [info.filename for info in archive.infolist()]
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1 or any("/" not in name for name in names):
        raise UnsafeModel("entries outside one root folder")
    root = roots.pop()
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", root) or root in (".", ".."):
        raise UnsafeModel(f"root folder {root!r} is not a name torch writes")
    for name in names:
        relative = name.split("/", 1)[1]
        if not allowed.fullmatch(relative) or ".." in relative.split("/"):
            raise UnsafeModel(f"entry {relative!r} is not part of a {kind} archive")
    return root, names


# ---------------------------------------------------------------------------------------------------
# Symbolic shapes (.pt2)

#: Symbols torch.export writes: sizes (s), unbacked ints (u), floats (zf, zuf).
SYMBOL = re.compile(r"(?:s|u|zf|zuf)[0-9]{1,6}")
#: The sympy constructors torch 2.14 writes in ``expr_str`` (found by exporting models with dynamic
#: sizes, reshapes, slicing, ``//``, ``%``, ``torch._check`` and ``.item()``).
SYM_FUNCTIONS = frozenset({
    "Symbol", "Integer", "Float", "Add", "Mul", "Mod", "FloorDiv", "Min", "Max", "TruncToInt", "ToFloat",
    "Equality", "Unequality", "LessThan", "GreaterThan", "StrictLessThan", "StrictGreaterThan",
})
#: Assumptions a ``Symbol(...)`` may carry.
SYM_ASSUMPTIONS = frozenset({"integer", "positive", "nonnegative", "negative", "nonpositive", "real", "finite",
                             "nonzero", "zero", "rational", "even", "odd"})
MAX_EXPR_CHARS = 4096
_EXPR_TEXT = re.compile(r"[A-Za-z0-9_ (),'.=+*/-]*")  # one line; no brackets, quotes other than ', operators
_FLOAT_TEXT = re.compile(r"-?[0-9]{1,40}(?:\.[0-9]{0,40})?(?:e[+-]?[0-9]{1,3})?")
_INT_LIMIT = 1 << 63


def check_sym_expr(text: object) -> None:
    """Refuse ``text`` unless it is a symbolic-shape expression of the whitelist grammar.

    Infix (``2*s0 + 1``, ``s0//2``) or sympy's ``srepr`` (``Mul(Integer(2), Symbol('s0',
    positive=True, integer=True))``) over :data:`SYM_FUNCTIONS`, symbols named like
    :data:`SYMBOL`, integers below 2**63 and decimal floats: parsed here, never evaluated.
    """
    if not isinstance(text, str):
        raise UnsafeModel(f"symbolic expression {text!r} is not a string")
    if len(text) > MAX_EXPR_CHARS or not _EXPR_TEXT.fullmatch(text):
        raise UnsafeModel(f"symbolic expression {_excerpt(text)} has characters outside the shape grammar")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise UnsafeModel(f"symbolic expression {_excerpt(text)} does not parse") from None
    _check_sym_node(tree.body, text)


def _check_sym_node(node: ast.AST, text: str) -> None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.FloorDiv):
        _check_sym_node(node.left, text)
        _check_sym_node(node.right, text)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        _check_sym_node(node.operand, text)
    elif isinstance(node, ast.Name) and SYMBOL.fullmatch(node.id):
        pass
    elif isinstance(node, ast.Constant) and _small_int(node.value):
        pass
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SYM_FUNCTIONS:
        _check_sym_call(node.func.id, node, text)
    else:
        raise UnsafeModel(f"symbolic expression {_excerpt(text)}: {type(node).__name__} "
                          f"{_excerpt(ast.unparse(node))} is outside the shape grammar")


def _check_sym_call(function: str, node: ast.Call, text: str) -> None:
    args, keywords = node.args, {k.arg: k.value for k in node.keywords}
    if any(isinstance(a, ast.Starred) for a in args) or None in keywords:
        raise UnsafeModel(f"symbolic expression {_excerpt(text)}: starred arguments")
    if function == "Symbol":
        ok = (len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
              and SYMBOL.fullmatch(args[0].value) is not None
              and all(k in SYM_ASSUMPTIONS and isinstance(v, ast.Constant) and isinstance(v.value, bool)
                      for k, v in keywords.items()))
    elif function == "Integer":
        operand = args[0].operand if len(args) == 1 and isinstance(args[0], ast.UnaryOp) and isinstance(
            args[0].op, ast.USub) else (args[0] if len(args) == 1 else None)
        ok = not keywords and isinstance(operand, ast.Constant) and _small_int(operand.value)
    elif function == "Float":
        precision = keywords.get("precision")
        ok = (len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
              and _FLOAT_TEXT.fullmatch(args[0].value) is not None and set(keywords) <= {"precision"}
              and (precision is None or (isinstance(precision, ast.Constant) and type(precision.value) is int
                                         and 1 <= precision.value <= 64)))
    else:
        ok = not keywords and 1 <= len(args) <= 64
        for arg in args:
            _check_sym_node(arg, text)
    if not ok:
        raise UnsafeModel(f"symbolic expression {_excerpt(text)}: {function}(...) with arguments outside the "
                          f"shape grammar")


def _small_int(value: object) -> bool:
    return type(value) is int and -_INT_LIMIT < value < _INT_LIMIT


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


# ---------------------------------------------------------------------------------------------------
# torch.export archives

#: Entries (below the root folder) of a ``.pt2`` that ``torch.export.save`` writes for one model.
EXPORT_ENTRIES = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/model\.json"
    r"|data/weights/model_weights_config\.json|data/weights/weight_[0-9]{1,9}"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_[0-9]{1,9}"
    r"|data/sample_inputs/model\.pt"
    r"|extra/[A-Za-z0-9_.-]{1,100}")
#: ``torch.ops.higher_order`` operators a guest's graph may use (they take subgraphs, checked too).
EXPORT_HIGHER_ORDER = frozenset({"cond", "while_loop", "wrap_with_set_grad_enabled", "wrap_with_autocast"})
#: Python callables torch.export writes for symbolic-integer arithmetic (``module.name``).
EXPORT_SYM_OPS = frozenset({
    *(f"_operator.{n}" for n in ("getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "neg", "pos", "eq",
                                 "ne", "lt", "le", "gt", "ge", "and_", "or_", "not_", "abs")),
    "math.trunc", "math.ceil", "math.floor",
    *(f"torch.{n}" for n in ("sym_int", "sym_float", "sym_ite", "sym_max", "sym_min", "sym_not", "sym_sqrt")),
})
_EXPORT_ATEN = re.compile(r"torch\.ops\.aten\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")
_EXPORT_HOP = re.compile(r"torch\.ops\.higher_order\.([A-Za-z0-9_]+)")


def export_target_allowed(target: str) -> bool:
    """Whether a ``.pt2`` graph node may call ``target`` (its serialized name)."""
    if found := _EXPORT_ATEN.fullmatch(target):
        return found.group(1) in ATEN
    if found := _EXPORT_HOP.fullmatch(target):
        return found.group(1) in EXPORT_HIGHER_ORDER
    return target in EXPORT_SYM_OPS


def safe_torch_export(data: bytes, *, check_targets: bool = True) -> bytes:
    """A copy of a ``.pt2`` archive that ``torch.export.load`` reads without running anything of it.

    Raises :class:`UnsafeModel` for an entry torch would not write, a pickled payload, a symbolic
    expression outside the grammar, or (``check_targets``) a graph node calling an operator outside
    the allowlist. The copy has no sample inputs and no guard code (both only feed code torch
    generates and runs for re-tracing, which inference does not need).
    """
    with _archive(data) as archive:
        root, names = _entries(archive, EXPORT_ENTRIES, "torch.export")
        for kind, prefix in (("weights", "weight_"), ("constants", "tensor_")):
            config_name = f"{root}/data/{kind}/model_{kind}_config.json"
            if config_name not in names:
                if kind == "weights":
                    raise UnsafeModel("data/weights/model_weights_config.json is missing")
                continue
            for fqn, meta in _payload_config(_read(archive, config_name), config_name):
                if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                    raise UnsafeModel(f"{kind[:-1]} {fqn!r} is pickled, which could run code")
                path = meta.get("path_name")
                if not isinstance(path, str) or not re.fullmatch(prefix + r"[0-9]{1,9}", path):
                    raise UnsafeModel(f"{kind[:-1]} {fqn!r} ({path!r}) is not a raw tensor payload")
                record = f"{root}/data/{kind}/{path}"
                if record not in names:
                    raise UnsafeModel(f"{kind[:-1]} {fqn!r}: {path} is missing")
                _check_payload_size(meta, archive.getinfo(record).file_size, f"{kind[:-1]} {fqn!r}")
        model_name = f"{root}/models/model.json"
        if model_name not in names:
            raise UnsafeModel("models/model.json is missing")
        program = _json(_read(archive, model_name), model_name)
        if not isinstance(program, dict):
            raise UnsafeModel("models/model.json is not an object")
        check_export_program(program, check_targets=check_targets)
        guards = program.get("guards_code", [])
        if not isinstance(guards, list) or not all(isinstance(g, str) for g in guards):
            raise UnsafeModel("guards_code is not a list of strings")
        program["guards_code"] = []
        rebuilt = io.BytesIO()
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_STORED) as out:
            for name in names:
                if name.endswith(".json"):
                    check_json_strings(_json(_read(archive, name), name), name)
                if name == model_name:
                    out.writestr(name, json.dumps(program))
                else:
                    # An empty sample-inputs entry reads as "none" (torch unpickles it with a
                    # fallback that runs code).
                    out.writestr(name, b"" if "/data/sample_inputs/" in name else _read(archive, name))
        return rebuilt.getvalue()


def _check_payload_size(meta: dict[str, Any], nbytes: int, what: str) -> None:
    """An empty payload makes torch allocate zeros of the declared size: that size must be empty too
    (otherwise a few bytes of archive would make the host allocate what the JSON claims)."""
    tensor = meta.get("tensor_meta")
    sizes = tensor.get("sizes") if isinstance(tensor, dict) else None
    if not isinstance(sizes, list) or not all(isinstance(d, dict) and set(d) == {"as_int"} and _small_int(d["as_int"])
                                              and d["as_int"] >= 0 for d in sizes):
        raise UnsafeModel(f"{what} has no concrete tensor size")
    if nbytes == 0:
        count = 1
        for dim in sizes:
            count *= dim["as_int"]
        if count:
            raise UnsafeModel(f"{what} declares {count} elements but stores none")


def _json(raw: bytes, name: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise UnsafeModel(f"{name.split('/', 1)[-1]} is not JSON: {exc}") from None


def _payload_config(raw: bytes, name: str) -> list[tuple[str, Any]]:
    config = _json(raw, name)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise UnsafeModel(f"{name.split('/', 1)[-1]} is not a payload config")
    return [(str(fqn), meta) for fqn, meta in entries.items()]


def check_export_program(program: dict[str, Any], *, check_targets: bool = True) -> None:
    """Check the parts of ``models/model.json`` that torch evaluates or calls."""
    constraints = program.get("range_constraints", {})
    if not isinstance(constraints, dict):
        raise UnsafeModel("range_constraints is not an object")
    for key, bounds in constraints.items():
        check_sym_expr(key)  # torch reads symbol numbers out of these names (and counts up to them)
        if not isinstance(bounds, dict) or not all(
                bounds.get(b) is None or _small_int(bounds.get(b)) for b in ("min_val", "max_val")):
            raise UnsafeModel(f"range constraint {key!r} has bounds that are not integers")
    for _owner, key, value in _walk(program):
        if key == "expr_str":
            check_sym_expr(value)
        elif check_targets and key == "nodes":  # a graph's nodes (the program's, or a subgraph's)
            for node in value if isinstance(value, list) else [value]:
                target = node.get("target") if isinstance(node, dict) else None
                if not isinstance(target, str) or not export_target_allowed(target):
                    raise UnsafeModel(f"its graph calls {_excerpt(str(target))}, which is not an allowed operator")
        elif check_targets and key == "as_operator":
            if not isinstance(value, str) or not export_target_allowed(value):
                raise UnsafeModel(f"its graph passes operator {_excerpt(str(value))}, which is not allowed")


def check_json_strings(document: Any, name: str) -> None:
    """Every ``expr_str`` in any JSON entry of the archive matches the grammar (torch parses the
    configs' tensor metadata with the same deserializer)."""
    for _owner, key, value in _walk(document):
        if key == "expr_str":
            check_sym_expr(value)


def _walk(document: Any) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """Every (object, key, value) of a JSON document, iteratively (a deep document is no crash)."""
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                yield item, str(key), value
                if isinstance(value, dict | list):
                    pending.append(value)
        elif isinstance(item, list):
            pending.extend(v for v in item if isinstance(v, dict | list))


# ---------------------------------------------------------------------------------------------------
# TorchScript archives

#: Entries (below the root folder) of an archive ``torch.jit.save`` writes.
TORCHSCRIPT_ENTRIES = re.compile(
    r"data\.pkl|constants\.pkl|version|byteorder|\.data/version|\.data/serialization_id"
    r"|data/[0-9]{1,9}|constants/[0-9]{1,9}|traced_inputs\.pkl|traced_inputs/[0-9]{1,9}"
    r"|code/__torch__(?:/[A-Za-z_][A-Za-z0-9_]{0,200}){0,32}\.py(?:\.debug_pkl)?"
    r"|extra/[A-Za-z0-9_.-]{1,100}")
#: Globals TorchScript's pickles may name (besides classes the archive's code defines).
PICKLE_GLOBALS = frozenset({
    "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch.jit._pickle build_intlist",
    "torch.jit._pickle build_tensorlist", "torch.jit._pickle build_doublelist", "torch.jit._pickle build_boollist",
    "torch.jit._pickle restore_type_tag",
    *(f"torch {kind}Storage" for kind in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                          "Byte", "Bool", "ComplexFloat", "ComplexDouble")),
})
_PICKLE_CODE_OPCODES = frozenset({"STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"})

#: Names TorchScript resolves as builtins that a model's code may call (``print``, ``id``,
#: ``hasattr``, ``fork`` and the rest are not among them).
BUILTIN_CALLS = frozenset({
    "tuple", "float", "complex", "int", "bool", "str", "getattr", "isinstance", "len", "round", "min", "max", "abs",
    "all", "any", "divmod", "sum", "list", "dict", "ord", "chr", "bin", "hex", "oct", "range", "zip", "enumerate",
    "sorted", "annotate", "unchecked_cast", "uninitialized",
})
#: Type names and constants a model's code may mention.
TYPE_NAMES = frozenset({
    "Tensor", "int", "float", "bool", "str", "complex", "NoneType", "Optional", "List", "Dict", "Tuple", "Final",
    "Union", "Device", "number", "inf", "nan", "infj", "nanj",
})
#: Base classes TorchScript's printer writes.
CLASS_BASES = frozenset({"Module", "NamedTuple"})
#: Double-underscore names an archive may define or use (TorchScript writes these for nn
#: containers, TorchScript classes and module bookkeeping). Not ``__setstate__``: torch runs it
#: while loading.
DUNDER_NAMES = frozenset({"__init__", "__len__", "__contains__", "__getitem__", "__new__", "__parameters__",
                          "__buffers__"})
#: Roots of dotted names with a meaning of their own in TorchScript source.
_ROOTS = frozenset({"torch", "ops", "__torch__", "CONSTANTS"})
#: Every name TorchScript resolves without a local: its builtins (``print`` among them) and what
#: the source importer defines. A local may not take one of these names: where such a local is
#: unbound (assigned on one branch only), TorchScript falls back to the builtin.
RESERVED_NAMES = frozenset({
    "print", "tuple", "float", "complex", "int", "bool", "str", "getattr", "hasattr", "isinstance", "_to_tensor",
    "len", "hex", "oct", "round", "hash", "id", "min", "max", "abs", "all", "any", "divmod", "sum", "list", "dict",
    "ord", "chr", "bin", "pow", "range", "zip", "enumerate", "rangelist", "sorted", "AssertionError",
    "fork", "awaitable", "annotate", "unchecked_cast", "uninitialized", "inf", "nan", "infj", "nanj", "math",
    *_ROOTS, *TYPE_NAMES, *BUILTIN_CALLS,
})

_STATEMENTS = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.If, ast.For, ast.While, ast.Return, ast.Expr,
               ast.Pass, ast.Break, ast.Continue)
_EXPRESSIONS = (ast.Name, ast.Attribute, ast.Call, ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Dict, ast.IfExp)
_CONTEXTS = (ast.Load, ast.Store, ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.keyword)
_STRING = re.compile(r'"(?:[^"\\]|\\[\\\'"nrtabfv]|\\[0-7]{1,3}|\\x[0-9A-Fa-f]{2})*"'
                     r"|'(?:[^'\\]|\\[\\'\"nrtabfv]|\\[0-7]{1,3}|\\x[0-9A-Fa-f]{2})*'")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?j?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_SOURCE_TEXT = re.compile(r"[\x20-\x7e\n]*")


@dataclass
class _Definitions:
    """What the archive's code defines: qualified class and function names, and member names."""

    classes: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    members: set[str] = field(default_factory=set)


def check_torchscript(data: bytes, op_names: Iterable[str] = ()) -> None:
    """Refuse a TorchScript archive that is not a model torch wrote (before ``torch.jit.load``).

    ``op_names`` are the names of every operator torch has registered (``torch._C``'s schemas): a
    name the archive defines may not be one of them unless it is allowed, so that no method call
    on a tensor reaches an operator the allowlist leaves out.
    """
    with _archive(data) as archive:
        _, names = _entries(archive, TORCHSCRIPT_ENTRIES, "TorchScript")
        sources: dict[str, ast.Module] = {}
        for name in names:
            relative = name.split("/", 1)[1]
            if relative.endswith(".py"):
                qualifier = relative.removeprefix("code/").removesuffix(".py").replace("/", ".")
                if qualifier == "__torch__.torch.classes" or qualifier.startswith("__torch__.torch.classes."):
                    raise UnsafeModel(f"{relative} defines torch.classes, which are native objects")
                sources[qualifier] = _parse_source(_read(archive, name), relative)
        definitions = _define(sources)
        forbidden = frozenset(op_names) - ATEN - PRIM
        for member in definitions.members:
            if member in forbidden:
                raise UnsafeModel(f"its code defines {member!r}, which is also the name of an operator outside the "
                                  f"allowlist")
        for qualifier, tree in sources.items():
            _CodeCheck(qualifier, definitions, forbidden).module(tree)
        for name in names:
            if name.endswith(("pkl", ".debug_pkl")):
                _check_pickle(_read(archive, name), name.split("/", 1)[1], definitions)


def _parse_source(raw: bytes, name: str) -> ast.Module:
    """The archive's source, parsed, if Python and TorchScript must read it the same way.

    TorchScript's printer writes printable ASCII, no comments, no tabs, no backslash line
    continuations, plain double-quoted strings: anything else could tokenize one way for ``ast``
    and another for TorchScript's own lexer.
    """
    try:
        source = raw.decode("ascii")
    except UnicodeDecodeError:
        raise UnsafeModel(f"{name} is not ASCII source") from None
    if not _SOURCE_TEXT.fullmatch(source):
        raise UnsafeModel(f"{name} has control characters (tabs, carriage returns, form feeds) in its source")
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            kind = tokenize.tok_name[token.type]
            if kind in ("NAME", "OP", "NEWLINE", "NL", "INDENT", "DEDENT", "ENDMARKER"):
                if kind == "OP" and token.string in (";", "@", ":=", "..."):
                    raise UnsafeModel(f"{name} line {token.start[0]}: {token.string!r} is not TorchScript's output")
                continue
            if kind == "STRING" and _STRING.fullmatch(token.string):
                continue
            if kind == "NUMBER" and _NUMBER.fullmatch(token.string):
                continue
            raise UnsafeModel(f"{name} line {token.start[0]}: {kind.lower()} {_excerpt(token.string)} is not "
                              f"TorchScript's output")
        tree = ast.parse(source, filename=name)
    except (SyntaxError, tokenize.TokenError, ValueError, RecursionError, MemoryError) as exc:
        if isinstance(exc, UnsafeModel):
            raise
        raise UnsafeModel(f"{name} does not parse: {exc}") from None
    if "\\\n" in source:
        raise UnsafeModel(f"{name} continues a line with a backslash")
    return tree


def _define(sources: dict[str, ast.Module]) -> _Definitions:
    found = _Definitions()
    for qualifier, tree in sources.items():
        for item in tree.body:
            if isinstance(item, ast.ClassDef | ast.FunctionDef) and f"{qualifier}.{item.name}".startswith(
                    "__torch__.torch.classes"):
                raise UnsafeModel(f"its code defines {qualifier}.{item.name}: torch.classes are native objects")
            if isinstance(item, ast.ClassDef):
                found.classes.add(f"{qualifier}.{item.name}")
                for member in item.body:
                    if isinstance(member, ast.FunctionDef):
                        found.members.add(member.name)
                    elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                        found.members.add(member.target.id)
                    elif isinstance(member, ast.Assign):
                        found.members.update(t.id for t in member.targets if isinstance(t, ast.Name))
                        if (key := _annotation_key(member)) is not None and not key.isdigit():
                            found.members.add(key)
            elif isinstance(item, ast.FunctionDef):
                found.functions.add(f"{qualifier}.{item.name}")
    for name in sorted(found.members):
        if name.startswith("__") and name not in DUNDER_NAMES:
            raise UnsafeModel(f"its code defines {name!r}, a special method torch may call on its own (it runs "
                              f"__setstate__ while loading); allowed: {', '.join(sorted(DUNDER_NAMES))}")
        if not _IDENTIFIER.fullmatch(name) and not name.isdigit():
            raise UnsafeModel(f"its code defines {name!r}, which is not a plain name")
    return found


class _CodeCheck:
    """One source file of the archive, against the whitelist of what TorchScript's printer writes."""

    def __init__(self, qualifier: str, definitions: _Definitions, forbidden: frozenset[str]) -> None:
        self.qualifier = qualifier
        self.defs = definitions
        self.forbidden = forbidden
        self.locals: set[str] = set()

    def refuse(self, node: ast.AST, what: str) -> UnsafeModel:
        line = getattr(node, "lineno", "?")
        return UnsafeModel(f"its code ({self.qualifier}, line {line}) {what}")

    # -- structure -----------------------------------------------------------------------------------
    def module(self, tree: ast.Module) -> None:
        for item in tree.body:
            if isinstance(item, ast.ClassDef):
                self.class_def(item)
            elif isinstance(item, ast.FunctionDef):
                self.function(item)
            else:
                raise self.refuse(item, f"has a module-level {type(item).__name__}")

    def class_def(self, node: ast.ClassDef) -> None:
        if node.decorator_list or node.keywords:
            raise self.refuse(node, f"decorates class {node.name}")
        for base in node.bases:
            if not (isinstance(base, ast.Name) and base.id in CLASS_BASES):
                raise self.refuse(node, f"derives class {node.name} from {_excerpt(ast.unparse(base))}")
        for member in node.body:
            if isinstance(member, ast.FunctionDef):
                self.function(member)
            elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                self.annotation(member.annotation)
                if member.value is not None:
                    self.literal(member.value)
            elif isinstance(member, ast.Assign) and all(isinstance(t, ast.Name) for t in member.targets):
                self.literal(member.value)
            elif isinstance(member, ast.Assign) and _annotation_key(member) is not None:
                self.annotation(member.value)  # __annotations__["0"] = <type>: a container's numbered child
            elif not isinstance(member, ast.Pass):
                raise self.refuse(member, f"has a {type(member).__name__} in class {node.name}")

    def function(self, node: ast.FunctionDef) -> None:
        arguments = node.args
        if node.decorator_list or arguments.vararg or arguments.kwarg or arguments.posonlyargs or arguments.kwonlyargs:
            raise self.refuse(node, f"declares {node.name} with decorators or variable arguments")
        self.locals = {a.arg for a in arguments.args}
        for statement in ast.walk(node):
            for target in _store_targets(statement):
                self.locals.add(target)
        for name in sorted(self.locals):
            if not _IDENTIFIER.fullmatch(name) or name in RESERVED_NAMES:
                raise self.refuse(node, f"binds the name {name!r}, which TorchScript also resolves as a builtin")
        for argument in arguments.args:
            if argument.annotation is not None:
                self.annotation(argument.annotation)
        for default in arguments.defaults:
            self.literal(default)
        if node.returns is not None:
            self.annotation(node.returns)
        for statement in node.body:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if not isinstance(node, _STATEMENTS):
            raise self.refuse(node, f"has a {type(node).__name__} statement")
        if isinstance(node, ast.AnnAssign):
            self.annotation(node.annotation)
            self.target(node.target)
            if node.value is not None:
                self.expression(node.value)
            return
        if isinstance(node, ast.Assign | ast.AugAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                self.target(target)
            self.expression(node.value)
            return
        if isinstance(node, ast.For):
            self.target(node.target)
            self.expression(node.iter)
        elif isinstance(node, ast.If | ast.While):
            self.expression(node.test)
        elif isinstance(node, ast.Return | ast.Expr) and node.value is not None:
            self.expression(node.value)
        for child in getattr(node, "body", []) + getattr(node, "orelse", []):
            self.statement(child)

    def target(self, node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            return
        if isinstance(node, ast.Tuple | ast.List):
            for element in node.elts:
                self.target(element)
        elif isinstance(node, ast.Attribute):
            self.member(node, node.attr)
            self.expression(node.value)
        elif isinstance(node, ast.Subscript):
            self.expression(node.value)
            self.expression(node.slice)
        else:
            raise self.refuse(node, f"assigns to a {type(node).__name__}")

    # -- expressions ---------------------------------------------------------------------------------
    def literal(self, node: ast.expr) -> None:
        """A constant, or a list/tuple/dict of constants (class attributes, argument defaults)."""
        for child in ast.walk(node):
            if not isinstance(child, ast.Constant | ast.List | ast.Tuple | ast.Dict | ast.Load | ast.UnaryOp
                              | ast.USub):
                raise self.refuse(node, f"has a default or constant that is not a literal: "
                                        f"{_excerpt(ast.unparse(node))}")

    def annotation(self, node: ast.expr) -> None:
        """A type: names of :data:`TYPE_NAMES`, classes of the archive, subscripts and tuples of them."""
        if isinstance(node, ast.Name) and node.id in TYPE_NAMES:
            return
        if isinstance(node, ast.Constant) and node.value is None:
            return
        if isinstance(node, ast.Subscript):
            self.annotation(node.value)
            self.annotation(node.slice)
        elif isinstance(node, ast.Tuple):
            for element in node.elts:
                self.annotation(element)
        elif isinstance(node, ast.Attribute) and _dotted(node) in self.defs.classes:
            return
        else:
            raise self.refuse(node, f"uses {_excerpt(ast.unparse(node))} as a type")

    def expression(self, node: ast.expr) -> None:
        if not isinstance(node, _EXPRESSIONS):
            raise self.refuse(node, f"uses a {type(node).__name__} expression")
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, str | int | float | complex | bool | type(None)):
                raise self.refuse(node, f"has a {type(node.value).__name__} constant")
        elif isinstance(node, ast.Name):
            if node.id not in self.locals and node.id not in TYPE_NAMES:
                raise self.refuse(node, f"uses the name {node.id!r}, which is neither a local nor a type")
        elif isinstance(node, ast.Attribute):
            self.attribute(node)
        elif isinstance(node, ast.Call):
            self.call(node)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expression(child)
                elif not isinstance(child, _CONTEXTS):
                    raise self.refuse(node, f"uses a {type(child).__name__}")

    def call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg is None or not _IDENTIFIER.fullmatch(keyword.arg):
                raise self.refuse(node, "passes keyword arguments by unpacking")
            self.expression(keyword.value)
        func = node.func
        arguments = node.args
        if any(isinstance(a, ast.Starred) for a in arguments):
            raise self.refuse(node, "passes unpacked arguments")
        if isinstance(func, ast.Name) and func.id not in self.locals:
            if func.id not in BUILTIN_CALLS:  # (a local never takes a builtin's name: RESERVED_NAMES)
                raise self.refuse(node, f"calls {func.id}(), which is not an allowed builtin")
            if func.id == "getattr":
                self.getattr_call(node)
                return
            if func.id in ("annotate", "uninitialized", "unchecked_cast", "isinstance") and arguments:
                typed = arguments[1] if func.id == "isinstance" and len(arguments) == 2 else arguments[0]
                self.annotation(typed)
                for argument in arguments:
                    if argument is not typed:
                        self.expression(argument)
                return
        elif isinstance(func, ast.Attribute):
            dotted = _dotted(func)
            # A class of the archive built by TorchScript's printer: __torch__.C.__new__(__torch__.C).
            if dotted is not None and func.attr == "__new__" and dotted[:-len(".__new__")] in self.defs.classes:
                if len(arguments) != 1 or _dotted(arguments[0]) != dotted[:-len(".__new__")]:
                    raise self.refuse(node, f"calls {dotted} with arguments other than its class")
                return
            self.attribute(func)
        elif not isinstance(func, ast.Name):
            raise self.refuse(node, f"calls the result of a {type(func).__name__}")
        for argument in arguments:
            self.expression(argument)

    def getattr_call(self, node: ast.Call) -> None:
        arguments = node.args
        if len(arguments) != 2 or node.keywords or not isinstance(arguments[1], ast.Constant) or not isinstance(
                arguments[1].value, str):
            raise self.refuse(node, "calls getattr() with a name that is not a constant")
        name = arguments[1].value
        if not name.isdigit():
            self.member(node, name)
        self.expression(arguments[0])

    def attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        root = dotted.split(".", 1)[0] if dotted is not None else None
        if dotted is not None and root in _ROOTS and root not in self.locals:
            parts = dotted.split(".")
            if root == "torch":
                if len(parts) != 2 or parts[1] not in ATEN:
                    raise self.refuse(node, f"uses {dotted}, which is not an allowed operator")
            elif root == "ops":
                allowed = {"aten": ATEN, "prim": PRIM}.get(parts[1] if len(parts) > 1 else "", frozenset())
                if len(parts) != 3 or parts[2] not in allowed:
                    raise self.refuse(node, f"uses {dotted}, which is not an allowed operator")
            elif root == "CONSTANTS":
                if len(parts) != 2 or not re.fullmatch(r"c[0-9]{1,9}", parts[1]):
                    raise self.refuse(node, f"uses {dotted}, which is not one of the archive's constants")
            elif dotted not in self.defs.classes and dotted not in self.defs.functions:
                raise self.refuse(node, f"uses {dotted}, which the archive does not define")
            return
        self.member(node, node.attr)
        self.expression(node.value)

    def member(self, node: ast.AST, name: str) -> None:
        """``value.name`` on a local value: an allowed operator's method form, or a member the archive defines."""
        if name in ATEN or name in PRIM:
            return
        if name in self.defs.members and name not in self.forbidden and (
                not name.startswith("__") or name in DUNDER_NAMES):
            return
        raise self.refuse(node, f"uses .{name}, which is neither an allowed operator nor defined by the archive")


def _annotation_key(node: ast.Assign) -> str | None:
    """``K`` of a class-level ``__annotations__["K"] = <type>`` (how TorchScript declares a field whose
    name is no identifier, such as a Sequential's ``"0"``), else None."""
    if len(node.targets) != 1:
        return None
    target = node.targets[0]
    if (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
            and target.value.id == "__annotations__" and isinstance(target.slice, ast.Constant)
            and isinstance(target.slice.value, str)):
        return target.slice.value
    return None


def _dotted(node: ast.AST) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _store_targets(node: ast.AST) -> Iterator[str]:
    """Names a statement binds (assignment and loop targets, tuple unpacking included)."""
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign | ast.For):
        targets = [node.target]
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Name):
            yield target.id
        elif isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)


def _check_pickle(raw: bytes, name: str, definitions: _Definitions) -> None:
    try:
        for opcode, argument, _ in pickletools.genops(raw):
            if opcode.name in _PICKLE_CODE_OPCODES:
                raise UnsafeModel(f"{name} uses pickle opcode {opcode.name}, which TorchScript does not write")
            if opcode.name == "GLOBAL":
                text = str(argument)
                module, _, attribute = text.partition(" ")
                if text in PICKLE_GLOBALS or (module.startswith("__torch__") and f"{module}.{attribute}" in
                                              definitions.classes):
                    continue
                raise UnsafeModel(f"{name} names {_excerpt(text)}, which is neither a tensor helper nor a class "
                                  f"the archive defines")
    except UnsafeModel:
        raise
    except Exception as exc:  # a truncated or malformed pickle
        raise UnsafeModel(f"{name} is not a readable pickle: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# After loading


#: Node kinds of a TorchScript graph that are structure, not calls.
STRUCTURAL_KINDS = frozenset({
    "prim::Constant", "prim::GetAttr", "prim::SetAttr", "prim::CallMethod", "prim::CallFunction", "prim::If",
    "prim::Loop", "prim::TupleConstruct", "prim::TupleUnpack", "prim::TupleIndex", "prim::TupleSlice",
    "prim::ListConstruct", "prim::ListUnpack", "prim::DictConstruct", "prim::CreateObject", "prim::Uninitialized",
    "prim::unchecked_cast", "prim::isinstance", "prim::NamedTupleConstruct", "prim::Return", "prim::Param",
})


def disallowed_kind(kinds: Iterable[str]) -> str | None:
    """The first node kind of a loaded TorchScript graph that is neither structure nor an allowed operator."""
    for kind in kinds:
        if kind in STRUCTURAL_KINDS:
            continue
        namespace, _, name = kind.partition("::")
        if (namespace == "aten" and name in ATEN) or (namespace == "prim" and name in PRIM):
            continue
        return kind
    return None


def disallowed_target(targets: Iterable[Any], name_of: Callable[[Any], str]) -> str | None:
    """The first call target of a loaded ``.pt2`` graph outside the allowlist (``name_of`` gives its
    serialized name), if any."""
    for target in targets:
        name = name_of(target)
        if not export_target_allowed(name):
            return name
    return None
