"""The ``grammar`` (GBNF) and ``json-schema`` options: checked before llama.cpp sees them.

A guest's grammar reaches llama.cpp's GBNF parser, which recurses once per nesting level and copies
the repeated element of ``x{m,n}`` m..n times: a few bytes of grammar could exhaust the host's stack or
memory. So the text is scanned first (whitelist: bounded size, nesting and expansion), and a JSON
schema is converted here, with llama-cpp-python's converter, only after its own checks: ``$ref`` only
within the document (the converter would fetch ``https://`` references), bounded repetition counts
(the converter writes ``minItems`` copies out as text), and its ``char`` rule made strict: JSON
strings hold no raw control characters (llama-cpp-python's ``[^"\\\\]`` lets them through, so its
output is not always JSON; llama.cpp's C++ converter, WasmEdge's, excludes them as here).
"""

from __future__ import annotations

import json
import re
from typing import Any

from wasinn import ErrorCode, WasiNnError

#: Nesting of ( ) in a GBNF text (each level is a recursion of llama.cpp's parser).
MAX_DEPTH = 128
#: Symbols that repetitions {m,n} may copy in all: llama.cpp expands them when it parses the grammar.
MAX_EXPANSION = 1 << 18
#: A schema's nesting, and its repetition counts (minItems, maxLength, ...; the converter writes
#: out up to that many copies, nested as deep for the optional ones).
MAX_SCHEMA_DEPTH = 64
MAX_SCHEMA_COUNT = 100
#: A pattern's {m,n} quantifiers, multiplied together (the converter expands them as text).
MAX_PATTERN_EXPANSION = 1024
_COUNT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")

#: JSON string characters: anything but '"', '\\' and the control characters (RFC 8259), or an escape.
STRICT_CHAR = r'[^"\\\x7F\x00-\x1F\uD800-\uDFFF] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
#: A pattern's "." inside a JSON string: the same characters.
STRICT_DOT = r'[^"\\\x7F\x00-\x1F\uD800-\uDFFF]'


def _invalid(message: str) -> WasiNnError:
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, message)


def check_gbnf(text: str, *, key: str = "grammar") -> None:
    """Refuse a GBNF text whose parsing by llama.cpp would recurse or expand past the bounds."""
    depth = 0
    expansion = 0
    last_atom = 1  # symbols of the element a repetition applies to
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":  # a comment, to the end of the line
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c in "\"[":
            close = '"' if c == '"' else "]"
            j = i + 1
            while j < n and text[j] != close:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise _invalid(f"option {key}: unterminated {'string' if c == chr(34) else 'character class'}")
            last_atom = max(j - i, 1)  # llama.cpp: one symbol per character (more for a class: ranges)
            i = j + 1
            continue
        if c == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise _invalid(f"option {key}: nested more than {MAX_DEPTH} levels deep")
        elif c == ")":
            depth -= 1
            last_atom = 1  # a group becomes one rule reference
        elif c == "{":
            match = re.compile(r"\{\s*(\d*)\s*(,?)\s*(\d*)\s*\}").match(text, i)
            if match is None:
                raise _invalid(f"option {key}: malformed repetition at offset {i}")
            low, comma, high = match.groups()
            count = max(int(low or 0), int(high or 0), 1) if (low or high) else 1
            if len(low) > 9 or len(high) > 9:
                raise _invalid(f"option {key}: repetition count too large")
            expansion += count * (last_atom + 1) * (2 if comma and not high else 1)
            if expansion > MAX_EXPANSION:
                raise _invalid(f"option {key}: its repetitions {{m,n}} expand to more than {MAX_EXPANSION} "
                               f"symbols")
            i = match.end()
            continue
        elif c.isalnum() or c in "-_":
            j = i
            while j < n and (text[j].isalnum() or text[j] in "-_"):
                j += 1
            last_atom = 1
            i = j
            continue
        i += 1


def _walk(node: Any, depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise _invalid(f"option json-schema: nested more than {MAX_SCHEMA_DEPTH} levels deep")
    if isinstance(node, list):
        for item in node:
            _walk(item, depth + 1)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
        # llama-cpp-python's converter would fetch an https:// reference: no network from a guest's schema
        raise _invalid(f"option json-schema: $ref {str(ref)[:60]!r} is not within the schema (only '#...')")
    for name in _COUNT_KEYS:
        value = node.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not
                                  0 <= value <= MAX_SCHEMA_COUNT):
            raise _invalid(f"option json-schema: {name} {str(value)[:30]} is not an integer in 0..{MAX_SCHEMA_COUNT}")
    pattern = node.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise _invalid("option json-schema: pattern is not a string")
        product = 1
        for low, high in re.findall(r"\{\s*(\d*)\s*,?\s*(\d*)\s*\}", pattern):
            if len(low) > 6 or len(high) > 6:
                raise _invalid("option json-schema: a pattern's repetition count is too large")
            product *= max(int(low or 0), int(high or 0), 1)
            if product > MAX_PATTERN_EXPANSION:
                raise _invalid(f"option json-schema: the pattern's repetitions expand to more than "
                               f"{MAX_PATTERN_EXPANSION} copies")
    for value in node.values():
        _walk(value, depth + 1)


def schema_to_gbnf(text: str) -> str:
    """A JSON schema (text) -> the GBNF grammar whose output is JSON valid against it."""
    from llama_cpp.llama_grammar import DOT, PRIMITIVE_RULES, SchemaConverter

    try:
        schema = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"option json-schema: not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(schema, dict | bool):
        raise _invalid("option json-schema: a schema is a JSON object (or true / false)")
    _walk(schema, 0)
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        schema = converter.resolve_refs(schema, "input")
        converter.visit(schema, "")
    except (RecursionError, MemoryError):
        raise _invalid("option json-schema: too deeply nested to convert") from None
    except Exception as exc:  # the converter asserts and indexes on schemas it does not know
        raise _invalid(f"option json-schema: cannot be converted to a grammar: {type(exc).__name__}: "
                       f"{str(exc)[:200]}") from None
    # By content, not name: a schema's own definition may be called "char" (the converter renames).
    rules: dict[str, str] = converter._rules
    loose_char = PRIMITIVE_RULES["char"].content
    for name, rule in rules.items():
        if rule == loose_char:
            rules[name] = STRICT_CHAR
        elif rule == DOT:
            rules[name] = STRICT_DOT
    grammar = converter.format_grammar()
    check_gbnf(grammar, key="json-schema")
    return str(grammar)
