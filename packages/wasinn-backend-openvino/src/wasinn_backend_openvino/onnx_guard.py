"""How much memory a guest's ONNX model makes OpenVINO allocate, bounded before it allocates it.

OpenVINO has no allocator cap to hand a model to: it constant-folds a guest's ``ConstantOfShape([2^28])``
while compiling (1 GiB in ``load``, 3 GiB once inferred) and sizes every other tensor at infer time
from whatever shapes the graph computes. It does know those shapes before it allocates: reading the
model runs shape inference (constant shape inputs included), and reshaping a copy of it to the input
shapes a guest sends tells the rest. So for a guest's ONNX model :class:`GuestOnnxGuard`

* at load, before compiling: walks every operator (loop and branch bodies included) and refuses,
  with ``too_large``, one whose output is larger than ``Limits.max_tensor_bytes`` or outputs that add
  up to more than ``Limits.max_runtime_bytes_per_context``;
* at compute, for a model with dynamic inputs: does the same on a copy reshaped to the shapes the
  guest set (once per distinct set of shapes), before OpenVINO infers;
* refuses, with ``unsupported_operation``, a model in which some tensor's size depends on input
  *values* without a bound (``ConstantOfShape`` of an input, a ``Loop`` that grows a tensor): no
  check before the run can size it, and OpenVINO could not stop it. (The onnx backend runs such
  models in a capped arena.)

Only dimensions' upper bounds are used, so the check is conservative: a tensor is counted at the
largest size its shape allows, and all of them as if alive at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wasinn import Context, ErrorCode, Limits, WasiNnError

#: Operators that make no new memory at run time: inputs, outputs, and constants (the model's own
#: weights, already counted as model bytes).
_NOT_COUNTED = frozenset({"Parameter", "Result", "Constant"})
#: Distinct input-shape sets whose check is remembered per graph.
_CHECKED_SHAPES = 64


@dataclass
class Footprint:
    """Upper bounds of what a model's operators allocate, in bytes."""

    largest: int = 0
    largest_op: str = ""
    total: int = 0
    outputs: int = 0
    #: Operators whose output size depends on input values without a bound.
    unbounded: list[str] = field(default_factory=list)


def _bodies(op: Any) -> Iterator[Any]:
    """The bodies of a Loop, TensorIterator or If."""
    for getter in ("get_function", "get_then_body", "get_else_body"):
        method = getattr(op, getter, None)
        if method is None:
            continue
        try:
            body = method()
        except Exception:
            continue
        if body is not None:
            yield body


def _describe(op: Any) -> str:
    return f"{op.get_type_name()} {op.get_friendly_name()!r}"


def _elements(shape: Any) -> int | None:
    """The largest element count a partial shape allows; ``None`` if unbounded."""
    if shape.rank.is_dynamic:
        return None
    count = 1
    for dim in shape:
        largest = dim.get_max_length()
        if largest < 0:
            return None
        count *= largest
    return count


def footprint(model: Any, depth: int = 0) -> Footprint:
    """What ``model``'s operators may allocate (bodies included, counted once)."""
    found = Footprint()
    _walk(model, found, depth)
    for output in model.outputs:
        count = _elements(output.get_partial_shape())
        found.outputs += 0 if count is None else count * output.get_element_type().size
    return found


def _walk(model: Any, found: Footprint, depth: int) -> None:
    if depth > 16:
        found.unbounded.append("bodies nested more than 16 deep")
        return
    for op in model.get_ordered_ops():
        for body in _bodies(op):
            _walk(body, found, depth + 1)
        if op.get_type_name() in _NOT_COUNTED:
            continue
        for index in range(op.get_output_size()):
            count = _elements(op.get_output_partial_shape(index))
            if count is None:
                found.unbounded.append(_describe(op))
                continue
            size = count * op.get_output_element_type(index).size
            found.total += size
            if size > found.largest:
                found.largest, found.largest_op = size, f"{_describe(op)} {op.get_output_partial_shape(index)}"


class GuestOnnxGuard:
    """The bounds of one guest ONNX graph on OpenVINO (see the module's docstring)."""

    def __init__(self, model: Any, limits: Limits) -> None:
        self.limits = limits
        self.dynamic = any(port.get_partial_shape().is_dynamic for port in model.inputs)
        #: Kept only while compute may still need a reshaped copy (a model with dynamic inputs).
        self.model: Any = model if self.dynamic else None
        self._checked: OrderedDict[tuple[tuple[int, ...], ...], int] = OrderedDict()
        self._lock = threading.Lock()
        found = footprint(model)
        if found.unbounded and not self.dynamic:
            raise self._unbounded(found)
        self._check(found)
        #: The outputs' bytes when the model's shapes are all known at load (charged per context).
        self.static_outputs = found.outputs if not found.unbounded else 0

    def _unbounded(self, found: Footprint) -> WasiNnError:
        return WasiNnError(ErrorCode.UNSUPPORTED_OPERATION,
                           f"OpenVINO cannot bound the memory of this guest model: the size of {found.unbounded[0]} "
                           "depends on the values of its inputs, and OpenVINO has no allocator cap (the onnx "
                           "backend runs such models in a capped arena)")

    def _check(self, found: Footprint) -> None:
        limits = self.limits
        if found.largest > limits.max_tensor_bytes:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"{found.largest_op} would be {found.largest} bytes (limit "
                                                   f"{limits.max_tensor_bytes}, Limits.max_tensor_bytes)")
        if found.total > limits.max_runtime_bytes_per_context:
            raise WasiNnError(ErrorCode.TOO_LARGE, f"the model's tensors would take up to {found.total} bytes (limit "
                                                   f"{limits.max_runtime_bytes_per_context}, "
                                                   "Limits.max_runtime_bytes_per_context)")

    def outputs_for(self, shapes: Sequence[tuple[int, ...]]) -> int:
        """Check the model for these input shapes (once per distinct set); the outputs' bytes bound.

        Raises ``WasiNnError`` before OpenVINO infers if the shapes would take it past the limits.
        """
        if self.model is None:
            return self.static_outputs
        key = tuple(shapes)
        with self._lock:
            known = self._checked.get(key)
            if known is not None:
                self._checked.move_to_end(key)
                return known
        import openvino

        copy = self.model.clone()
        try:
            copy.reshape({port: openvino.PartialShape(list(shape)) for port, shape in zip(copy.inputs, shapes,
                                                                                         strict=True)})
        except Exception as exc:
            from wasinn_backend_openvino.runtime import message

            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"the model cannot take inputs of shapes "
                                                          f"{[list(s) for s in shapes]}: {message(exc)}") from None
        found = footprint(copy)
        if found.unbounded:
            raise self._unbounded(found)
        self._check(found)
        with self._lock:
            self._checked[key] = found.outputs
            while len(self._checked) > _CHECKED_SHAPES:
                self._checked.popitem(last=False)
        return found.outputs

    def before_infer(self, context: Context, request: Any, inputs: int) -> None:
        """Check the shapes the guest set, and charge the outputs' bound before OpenVINO infers."""
        shapes = [tuple(int(d) for d in request.get_input_tensor(i).shape) for i in range(inputs)]
        context.budget.hold("outputs", self.outputs_for(shapes))

    @staticmethod
    def after_infer(context: Context, request: Any, outputs: int) -> None:
        """Charge what the outputs really take (at most the bound held before)."""
        context.budget.hold("outputs", sum(int(request.get_output_tensor(i).byte_size) for i in range(outputs)))
