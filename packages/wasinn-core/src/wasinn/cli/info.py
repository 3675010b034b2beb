"""``wasinn backends``, ``wasinn explain`` and ``wasinn hardware``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasinn.cli.common import print_json, resolve_paths

if TYPE_CHECKING:
    import argparse

# Each command imports what it needs when it runs: `wasinn backends` (discovery only) must not pay
# for the host, wasmtime or the ABI modules.


def backends_command(args: argparse.Namespace) -> int:
    # Listing needs only discovery (no host, no runtimes); --probe asks each runtime for its devices.
    from wasinn.plugins import discover

    report = [backend.to_dict() for backend in discover()]
    if args.probe:
        from wasinn.host.host import WasiNnHost

        devices = WasiNnHost().backend_devices()
        for entry in report:
            entry["devices"] = [{"kind": d.kind.value, "name": d.name, "vendor": d.vendor}
                                for d in devices if d.source == entry["name"]]
    if args.json:
        print_json(report)
        return 0
    if not report:
        print("No backend is installed. Install one, e.g.: pip install wasinn-backend-onnx")
        return 0
    for entry in report:
        status = "available" if entry["available"] else f"UNAVAILABLE: {entry['unavailable_reason']}"
        dist = f"{entry['distribution']} {entry['version']}" if entry["distribution"] else "(registered in code)"
        runtime = f"{entry['runtime']} {entry['runtime_version'] or '?'}" if entry["runtime"] else "-"
        print(f"{entry['name']}: {status}")
        print(f"  distribution: {dist}")
        print(f"  runtime:      {runtime}")
        print(f"  formats:      {', '.join(entry['formats']) or '-'}")
        print(f"  targets:      {', '.join(entry['targets']) or '-'}")
        if entry["tensor_types"]:
            print(f"  tensor types: {', '.join(entry['tensor_types'])}")
        if args.probe:
            found = ", ".join(f"{d['kind']}: {d['name']}" for d in entry["devices"]) or "cpu only"
            print(f"  devices:      {found}")
    return 0


def explain_command(args: argparse.Namespace) -> int:
    from wasinn.cli.options import parse_encoding, parse_nn_remotes, parse_target
    from wasinn.host.host import WasiNnHost
    from wasinn.limits import Limits

    host = WasiNnHost(limits=Limits(guest_models=getattr(args, "guest_models", "in-process")))
    remotes = parse_nn_remotes(args.nn_remote, args.nn_remote_option)
    if len(args.paths) == 1 and args.paths[0] in remotes:
        # A named remote: which server would serve it, and why (the server is not contacted).
        name = args.paths[0]
        uri, options = remotes[name]
        host.register_remote(name, uri, options=options, target=parse_target(args.target))
        ranking = host.explain_named(name)
        shown = ranking.model.describe()
    else:
        paths = resolve_paths(args.paths)
        builders = [p.read_bytes() for p in paths]
        encoding = parse_encoding(args.encoding) if args.encoding else None
        ranking = host.explain(builders, target=parse_target(args.target), encoding=encoding, paths=paths)
        shown = ", ".join(str(p) for p in paths)
    where = None
    if ranking.winner and ranking.malformed is None:
        from wasinn.worker import describe
        where = describe(host.limits, ranking.model, ranking.winner.backend)
    if args.json:
        data = ranking.to_dict()
        data["runs"] = where
        print_json(data)
        return 0 if ranking.winner else 1
    print(f"model:  {shown}")
    print(f"format: {ranking.model.format.value}   target: {ranking.model.target.value}")
    for position, candidate in enumerate(ranking.candidates, 1):
        score = f"{candidate.score:6g}" if candidate.score is not None else "     -"
        device = f" [{candidate.device}]" if candidate.device else ""
        print(f"  {position}. {candidate.backend:<12} {score}{device}  {candidate.reason}")
    if ranking.model.format in host.code_formats():
        print(f"guests: a guest's load of a {ranking.model.format.value} file is refused (the file carries code); "
              "--nn-graph/--nn-preload models load, and --allow-guest-code lets guests' load too")
    winner = ranking.winner
    refusal = ranking.malformed
    if refusal is not None:
        print(f"winner: none - {refusal.backend} found the file malformed, so no other backend is asked to load it")
    else:
        print(f"winner: {winner.backend}" if winner else "winner: none - no installed backend can serve this model")
    if where is not None:
        print(f"{'guests' if ranking.model.from_guest else 'runs'}: {where}")
    return 0 if winner else 1


def hardware_command(args: argparse.Namespace) -> int:
    import json

    from wasinn import hardware
    from wasinn.host.host import WasiNnHost

    host = WasiNnHost()
    snapshot = host.hardware if args.probe else hardware.probe()
    print(json.dumps(snapshot.to_dict(), indent=2))
    return 0
