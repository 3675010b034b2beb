"""Use wasinn without WebAssembly: rank the backends for a model, then run it through a StoreState.

    python docs/examples/direct.py MODEL INPUT.npy

explains which backend would serve MODEL, then loads it, feeds INPUT.npy to input 0 and prints
output 0, with the same checks, backend choice and error codes a guest gets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import wasinn


def explain(host: wasinn.WasiNnHost, model_path: Path) -> wasinn.Ranking:
    """What `wasinn explain MODEL` prints, as data."""
    ranking = host.explain([model_path.read_bytes()], target=wasinn.ExecutionTarget.CPU)
    print(f"format: {ranking.model.format.value}")
    for candidate in ranking.candidates:
        score = "declined" if candidate.score is None else f"{candidate.score:g}"
        print(f"  {candidate.backend}: {score} ({candidate.reason})")
    print(f"winner: {ranking.winner.backend if ranking.winner else None}")
    return ranking


def infer(host: wasinn.WasiNnHost, model_path: Path, array: np.ndarray) -> np.ndarray:
    """load, init_execution_context, set_input, compute, get_output: the guest's calls, from Python."""
    state = host.new_state()  # a store's wasi-nn state, without the store
    try:
        graph = state.load([model_path.read_bytes()], wasinn.GraphEncoding.AUTODETECT, wasinn.ExecutionTarget.CPU)
        context = state.init_execution_context(graph)
        state.set_input(context, 0, wasinn.Tensor.from_numpy(array))
        state.compute(context)
        return state.get_output(context, 0).copy()  # the result may be a view of the runtime's buffer
    finally:
        state.close()  # finalize the context and unload the graph now


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, array = Path(argv[0]), np.load(argv[1])
    with wasinn.WasiNnHost() as host:
        if explain(host, model_path).winner is None:
            return 1
        try:
            print(infer(host, model_path, array))
        except wasinn.WasiNnError as error:  # what a guest would get as an errno
            print(f"wasi-nn error {error.code.value}: {error.message}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
