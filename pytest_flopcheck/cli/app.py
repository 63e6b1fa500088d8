"""The ``flopcheck`` command: sizing reports, sweeps and diffs from the analytic models.

Workload options are generated from the model's workload class, so every registered model gets
its own ``--height``/``--frames``-style options. Bad input is one sentence on stderr and exit
status 2; a model whose own code fails is one sentence and exit status 1; files are written to a
temporary directory that is renamed into place only when everything succeeded.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pytest_flopcheck.cli.common import DEFAULT_OUTPUT, UsageError, say
from pytest_flopcheck.cli.diff import cmd_diff
from pytest_flopcheck.cli.inspect import cmd_inspect
from pytest_flopcheck.cli.prune import cmd_prune
from pytest_flopcheck.cli.report import cmd_report
from pytest_flopcheck.cli.sweep import DEFAULT_MAX_POINTS, cmd_sweep
from pytest_flopcheck.cli.workloads import add_workload_arguments
from pytest_flopcheck.model.registration import ModelError, ModelRegistration, RegistrationError
from pytest_flopcheck.model.registry import Registry, load_registry
from pytest_flopcheck.sizing.hardware import GPUS, PRECISIONS
from pytest_flopcheck.text import shorten


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _import_plugin(spec: str) -> tuple[str, object]:
    """A model plugin named on the command line: a module name, or a path to a .py file."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise UsageError(f"-p {shorten(spec)} is not allowed: there is no such file")
            # As pytest imports a conftest: its folder goes on sys.path, so the modules and packages
            # beside it import.
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            module_spec = importlib.util.spec_from_file_location(f"flopcheck_plugin_{path.stem}", path)
            assert module_spec is not None
            assert module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return str(path), module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as pytest does for a project's own plugins
        return spec, importlib.import_module(spec)
    except UsageError:
        raise
    except SystemExit as exc:  # a plugin that exits on import would end flopcheck silently
        raise UsageError(
            f"-p {shorten(spec)} called sys.exit({shorten(exc.code)}) while being imported"
        ) from None
    except Exception as exc:
        raise UsageError(
            f"-p {shorten(spec)} could not be imported: {type(exc).__name__}: {shorten(str(exc), 200)}"
        ) from None


def _load_registry(plugins: Sequence[str] = ()) -> Registry:
    try:
        return load_registry([_import_plugin(spec) for spec in plugins])
    except RegistrationError as exc:
        raise UsageError(str(exc)) from None


def _registration(registry: Registry, name: str) -> ModelRegistration:
    if name not in registry.models:
        raise UsageError(f"model {name!r} is not registered: choose one of {registry.describe()}")
    return registry.models[name]


def cmd_list(registry: Registry) -> int:
    for name, reg in sorted(registry.models.items()):
        say(f"{name}: {reg.description}")
        say(f"  stages: {', '.join(f'{s.name} (tolerance {s.tolerance:g})' for s in reg.stages)}")
        say(f"  workloads: {', '.join(reg.workloads)}")
        if reg.runtimes:
            say(f"  runtimes: {', '.join(reg.runtimes)}")
            several = [name for name, r in reg.runtimes.items() if r.layout is not None and reg.parallel]
            if several:
                say(f"  on several GPUs (--gpus N): {', '.join(several)}")
    say("GPUs: " + ", ".join(f"{g.name} ({'/'.join(g.tflops)})" for g in GPUS.values()))
    return 0


def _parser(registry: Registry | None, command: str | None, model: str | None) -> _Parser:
    parser = _Parser(prog="flopcheck", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "-p",
        dest="plugins",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="also load this model plugin (a module name or a .py file such as a conftest.py), "
        "before the command; repeatable",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (
        ("report", "write a sizing report for one workload"),
        ("sweep", "FLOPs per stage over a grid of workloads (CSV, JSON, plots)"),
        ("inspect", "run one stage's real module and show what the counter and the memory tracker see"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("model", metavar="MODEL", help="a registered model (see 'flopcheck list')")
        sub.add_argument(
            "--config",
            metavar="PATH",
            help="read the architecture from a checkpoint's config.json (or its folder), for models that can",
        )
        sub.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR", help=f"default {DEFAULT_OUTPUT}")
        if name == "inspect":
            sub.add_argument(
                "--stage", required=True, metavar="NAME", help="the stage whose reference to run"
            )
            sub.add_argument("--device", default="meta", metavar="DEVICE", help="meta (default), cpu or cuda")
            sub.add_argument(
                "--depth", type=int, metavar="N", help="print modules up to this depth (files hold all)"
            )
            sub.add_argument(
                "--layout",
                metavar="SPEC",
                help="run rank 0 of this multi-GPU layout on a fake process group: "
                "ulysses=U,ring=R,fsdp=STAGE or its slug, u2r2-fsdp (the model's parallel reference)",
            )
            if registry is not None and command == name and model in registry.models:
                add_workload_arguments(sub, registry.models[model])
            continue
        if name == "report":
            sub.add_argument("--gpu", metavar="NAME", help=f"one of {', '.join(GPUS)} (default: all)")
            sub.add_argument(
                "--runtime",
                metavar="NAME",
                help="also size one of the model's runtimes (per-stage dtypes, devices, offload; "
                "see 'flopcheck list')",
            )
            sub.add_argument(
                "--gpus",
                metavar="N",
                help="size the runtime on N GPUs in the layout its script uses there (needs --runtime)",
            )
            sub.add_argument(
                "--layout",
                metavar="SPEC",
                help="the multi-GPU layout instead of the runtime's: "
                "ulysses=U,ring=R,cfg=1|2,fsdp=STAGE+STAGE,tensor=T,data=N, "
                "or its slug (u4c2, u8-fsdp, t2d2)",
            )
        else:
            sub.add_argument(
                "--gpu",
                metavar="NAME",
                help=f"add modelled seconds per stage (and serving figures) on one of {', '.join(GPUS)}",
            )
            sub.add_argument(
                "--runtime",
                metavar="NAME",
                help="with --gpu: each row's seconds end to end under this runtime, and with "
                "--vary gpus=1,2,4,8 its speedup, parallel efficiency, peak per GPU and communication share",
            )
        sub.add_argument("--precision", default="bf16", metavar="P", help=f"one of {', '.join(PRECISIONS)}")
        if name == "sweep":
            sub.add_argument(
                "--vary", action="append", default=[], metavar="FIELD=V1,V2", help="a swept field"
            )
            sub.add_argument(
                "--max-points",
                type=int,
                default=DEFAULT_MAX_POINTS,
                metavar="N",
                help=f"refuse grids of more than N workloads (default {DEFAULT_MAX_POINTS:,})",
            )
        if registry is not None and command == name and model in registry.models:
            add_workload_arguments(sub, registry.models[model])
    diff = commands.add_parser(
        "diff",
        help="compare two reports (report.json) or two verification runs (evidence.json), layer by layer",
    )
    diff.add_argument("before", help="a report.json, an evidence.json, or a run folder holding one")
    diff.add_argument("after")
    diff.add_argument("--top", type=int, default=10, help="how many changes of each kind to list")
    diff.add_argument(
        "--fail-on",
        metavar="CHANGE",
        help="exit 1 when a value changed by more than CHANGE (0, 0.01 or 1%%), a check newly "
        "fails or a check disappeared",
    )
    commands.add_parser("list", help="registered models, their workloads, and the GPU table")
    prune = commands.add_parser(
        "prune", help="keep the newest runs under the output directory, remove the rest"
    )
    prune.add_argument(
        "--keep", type=int, required=True, metavar="N", help="how many of the newest runs to keep"
    )
    prune.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR", help=f"default {DEFAULT_OUTPUT}")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    return parser


def run(argv: Sequence[str]) -> int:
    # First find the command and model (help deferred), then parse with the model's options.
    help_asked = any(a in ("-h", "--help") for a in argv)
    try:
        first = _parser(None, None, None).parse_known_args([a for a in argv if a not in ("-h", "--help")])[0]
    except UsageError:
        if help_asked:
            _parser(None, None, None).parse_args(argv)
        raise
    if first.command == "diff":
        return cmd_diff(_parser(None, None, None).parse_args(argv))
    if first.command == "prune":
        return cmd_prune(_parser(None, None, None).parse_args(argv))
    if first.command == "list":
        _parser(None, None, None).parse_args(argv)  # unknown options are errors here too
        return cmd_list(_load_registry(first.plugins))
    registry = _load_registry(first.plugins)
    reg = _registration(registry, first.model)
    args = _parser(registry, first.command, first.model).parse_args(argv)
    if args.command == "inspect":
        return cmd_inspect(reg, args)
    return cmd_report(reg, args) if args.command == "report" else cmd_sweep(reg, args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        say(f"flopcheck: error: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:  # the model's own code: not the user's input, so not exit 2
        say(f"flopcheck: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("flopcheck: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: the files are written, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
