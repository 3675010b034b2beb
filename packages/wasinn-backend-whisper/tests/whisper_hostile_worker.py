"""Run in a child process by the hostile and fuzz tests: a guest (through the default ranking) loads
each model / sets each audio file given in a directory, and one line per case reports the errno.
The parent reads the child's peak RSS and its exit status (a signal = a dead host)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import wasinn
from wasinn.testing.guest import TrampolineGuest

WHISPER, F32, U8 = 9, 1, 3


def main() -> None:
    mode, folder = sys.argv[1], Path(sys.argv[2])
    compute = len(sys.argv) > 3 and sys.argv[3] == "compute"
    results: dict[str, list[int]] = {}
    with wasinn.WasiNnHost() as host:
        if mode == "audio":
            host.register_model("default", sys.argv[4])
        guest = TrampolineGuest(host)
        graph = guest.load_by_name("default").value if mode == "audio" else None
        for path in sorted(folder.iterdir()):
            data = path.read_bytes()
            guest.reset_heap()
            if mode == "model":
                call = guest.load([data], encoding=WHISPER)
                errnos = [call.errno]
                if call.ok and call.value is not None:
                    guest.unload(call.value)
            else:
                ctx = guest.init_execution_context(graph or 0)
                record = guest.tensor_record(data, (1, len(data)), F32)
                errnos = [guest.call("set_input", ctx.value or 0, 0, record)]
                if errnos[0] == 0 and compute:
                    raw = json.dumps({"beam-size": 1, "best-of": 1, "threads": 1}).encode()
                    guest.call("set_input", ctx.value or 0, 1, guest.tensor_record(raw, (len(raw),), U8))
                    errnos.append(guest.compute(ctx.value or 0).errno)
                    errnos.append(guest.get_output_bytes(ctx.value or 0, 0)[0].errno)
                guest.finalize_execution_context(ctx.value or 0)
            results[path.name] = errnos
        guest.close()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
