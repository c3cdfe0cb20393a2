"""Command-line entry point: ``kinema SUBCOMMAND ...``.

Argument parsing only. Each subcommand lives in its own module of this package and defines

    NAME = "prepare"                 # the subcommand
    HELP = "one line for kinema --help"
    def add_arguments(parser): ...   # argparse options
    def run(args) -> int | None: ... # calls into kinema.<package>; returns the exit status

Modules are discovered, so adding a working subcommand is adding a file; a subcommand exists
only once it works. A ``KinemaError`` (bad input) is printed as one line and exits with 2.

Conventions shared by every subcommand: argument errors are one line (``kinema CMD: error: ...``),
numeric options have ranges (``kinema.cli._args``; a module may declare ``RANGES``), an operating
system error (a full disk, a folder where a file was expected, no permission) is one line naming the
path, all exit with status 2; progress and success messages go to stderr, data (``--out -``) to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from kinema import __version__
from kinema.cli._args import OneLineParser, apply_ranges, one_line_exit
from kinema.errors import KinemaError
from kinema.fsutil import public_paths


def _commands():
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 50), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="kinema",
        description="Train, sample, encode, edit and evaluate generative video models.",
    )
    parser.add_argument("--version", action="version", version=f"kinema {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        apply_ranges(p, getattr(mod, "RANGES", {}))
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as their own bytes
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") == "utf8":
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a one-line argument error
        return one_line_exit(exit_.code)
    args._argv = argv   # for subcommands that relaunch themselves (train --gpus N)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        if isinstance(getattr(args, "device", None), str):
            from kinema.devices import check_device

            check_device(args.device)
        return int(args._run(args) or 0)
    except KinemaError as err:
        print(f"kinema: error: {public_paths(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # full disk, a folder where a file belongs, permissions: the path and the reason
        name = getattr(err, "filename", None)
        if name and str(name).rsplit("/", 1)[-1].startswith(".tmp-"):  # never an internal temporary's name
            name = getattr(err, "filename2", None)
        where = f"{name}: " if name else ""
        print(public_paths(f"kinema: error: {where}{err.strerror or err}"), file=sys.stderr)
        return 2
    except MemoryError:
        print("kinema: error: out of memory (ask for smaller sizes, fewer frames or a smaller batch)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kinema: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
