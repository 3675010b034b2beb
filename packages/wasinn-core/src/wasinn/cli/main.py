"""``wasinn`` command line entry point."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from wasinn import __version__
from wasinn.cli.common import print_json as print_json  # kept importable from here
from wasinn.cli.common import resolve_paths as resolve_paths
from wasinn.errors import ConfigurationError, WasiNnError

log = logging.getLogger("wasinn")

EPILOG = "Environment: WASINN_BACKENDS (allow-list), WASINN_DISABLE_BACKENDS (deny-list), WASINN_HARDWARE (JSON)."


def add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    # Accepted before and after the command name (`wasinn -v run` and `wasinn run -v`).
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=default,
                           help="show ABI details and timings (-vv: debug)")
    verbosity.add_argument("-q", "--quiet", action="store_true", default=default, help="show only errors")


COMMANDS = ("run", "backends", "explain", "new-backend", "hardware")


def command_in(argv: Sequence[str]) -> str | None:
    """The command an argument list names: its first word that is not an option (the top-level
    options take no value). ``None`` if there is none, it is not a known command, or top-level help
    is asked for first (which lists every command)."""
    for arg in argv:
        if arg == "--" or arg.startswith("--h") or (arg.startswith("-") and not arg.startswith("--") and "h" in arg):
            return None
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``wasinn`` parser. Given ``command``, the parser knows only that command: all :func:`main`
    needs to parse a command line that names it (and cheaper: see benchmarks, section import)."""
    parser = argparse.ArgumentParser(prog="wasinn", description="The WASI-NN host for Python.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"wasinn {__version__}")
    add_verbosity(parser, 0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    if command in (None, "run"):
        run = sub.add_parser("run", help="run a WASI module with wasi-nn served by wasinn",
                             description="Run a WASI preview1 module, or a component (wasi:cli/run, wasi:nn WIT), "
                                         "from .wasm or .wat; exit status = the guest's.",
                             epilog=EPILOG)
        _add_run_arguments(run)

    if command in (None, "backends"):
        backends = sub.add_parser("backends", help="list installed backends")
        add_verbosity(backends, argparse.SUPPRESS)
        backends.add_argument("--json", action="store_true", help="machine-readable output")
        backends.add_argument("--probe", action="store_true",
                              help="also import each runtime and list the devices it sees (slower)")

    if command in (None, "explain"):
        explain = sub.add_parser("explain", help="show how each backend scores a model, and the winner")
        add_verbosity(explain, argparse.SUPPRESS)
        explain.add_argument("paths", nargs="+", metavar="PATH|NAME",
                             help="model file(s) (OpenVINO IR: the .xml and .bin), or the NAME of an --nn-remote")
        _add_remote_arguments(explain)
        explain.add_argument("--target", default="cpu", metavar="cpu|gpu|tpu")
        explain.add_argument("--encoding", metavar="ENCODING",
                             help="encoding a guest would claim (default: autodetect)")
        explain.add_argument("--json", action="store_true", help="machine-readable output")
        _add_guest_models_argument(explain)

    if command in (None, "new-backend"):
        new_backend = sub.add_parser("new-backend", help="create a backend package from wasinn's template",
                                     description="Create a new wasinn backend package (pyproject, hooks, "
                                                 "conformance tests, README) from the template shipped in "
                                                 "wasinn-core.")
        add_verbosity(new_backend, argparse.SUPPRESS)
        new_backend.add_argument("name", metavar="NAME",
                                 help="the backend's name (entry point and --backend value)")
        new_backend.add_argument("--dir", metavar="DIR",
                                 help="the project directory to create (default: ./wasinn-backend-NAME)")

    if command in (None, "hardware"):
        hardware = sub.add_parser("hardware", help="show the hardware snapshot backends score against")
        add_verbosity(hardware, argparse.SUPPRESS)
        hardware.add_argument("--probe", action="store_true",
                              help="include the devices each backend's runtime sees")
    return parser


def _add_run_arguments(run: argparse.ArgumentParser) -> None:
    from wasinn.abi.profiles import PROFILES  # only `wasinn run` (and the full parser) need the ABI modules

    add_verbosity(run, argparse.SUPPRESS)
    run.add_argument("module", metavar="MODULE", help="the .wasm or .wat file")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the guest")
    run.add_argument("--dir", action="append", default=[], metavar="HOST[::GUEST]",
                     help="preopen a host directory (as GUEST inside the guest; default: same path)")
    run.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="set a guest environment variable")
    run.add_argument("--nn-graph", action="append", default=[], metavar="NAME=PATH[,PATH...] | ENCODING::DIR",
                     help="register a named model (format sniffed), or Wasmtime's ENCODING::DIR form")
    run.add_argument("--nn-preload", action="append", default=[], metavar="NAME:ENCODING:TARGET:PATH[:PATH...]",
                     help="register a named model, WasmEdge syntax")
    _add_remote_arguments(run)
    run.add_argument("--backend", metavar="NAME", help="force this backend for every model")
    run.add_argument("--prefer", action="append", default=[], metavar="[FORMAT=]BACKEND[,BACKEND...]",
                     help="break score ties in this order (for one format, or all)")
    run.add_argument("--target", metavar="cpu|gpu|tpu", help="execution target of the --nn-graph models (default cpu)")
    run.add_argument("--abi", choices=sorted(PROFILES), help="force the guest's numbering profile (default: inferred)")
    run.add_argument("--fuel", type=int, metavar="N", help="trap the guest after N units of fuel")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="trap the guest after this wall time")
    run.add_argument("--max-memory", type=int, metavar="BYTES", help="cap the guest's linear memory")
    run.add_argument("--allow-guest-code", action="store_true",
                     help="let the guest load model formats that carry code (TorchScript, .pt2); refused by default")
    _add_guest_models_argument(run)


def _add_guest_models_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--guest-models", choices=("isolate", "in-process", "refuse"), default="in-process",
                        help="where the model bytes of a guest's load run: a confined worker process per "
                             "graph (default), the host process, or nowhere")


def _add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nn-remote", action="append", default=[], metavar="NAME=URI",
                        help="serve NAME from an inference server (http://HOST:PORT/v2/models/MODEL, "
                             "grpc://HOST:PORT/MODEL; needs wasinn-backend-kserve)")
    parser.add_argument("--nn-remote-option", action="append", default=[], metavar="NAME:KEY=VALUE",
                        help="an option of an --nn-remote (timeout, retries, transport, token-env, tls-ca ...)")


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("wasinn: %(message)s"))
    root = logging.getLogger("wasinn")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Without -v, show the backend choice and problems, not every ABI detail.
    logging.getLogger("wasinn.abi").setLevel(logging.WARNING if verbose == 0 and not quiet else logging.NOTSET)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(command_in(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    try:
        if args.command == "run":
            from wasinn.cli.run import run_command
            return run_command(args)
        if args.command == "backends":
            from wasinn.cli.info import backends_command
            return backends_command(args)
        if args.command == "explain":
            from wasinn.cli.info import explain_command
            return explain_command(args)
        if args.command == "new-backend":
            from wasinn.testing.template import new_backend_command
            return new_backend_command(args)
        if args.command == "hardware":
            from wasinn.cli.info import hardware_command
            return hardware_command(args)
    except ConfigurationError as exc:
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return 2
    except WasiNnError as exc:
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wasinn: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2
