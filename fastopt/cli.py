"""The ``fastopt`` command: ``fastopt demo | train | compare | bench``.

Each subcommand lives in its own module exposing ``add_arguments(parser)``
and ``run(args) -> int``; this module only dispatches, importing the chosen
one lazily so that ``fastopt --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

COMMANDS = {
    "demo": ("fastopt.commands.demo", "train a small MLP on spiral data, then time one step against NumPy"),
    "bench": ("fastopt.commands.bench", "time every optimizer against NumPy, torch.optim and the bandwidth limit"),
    "train": ("fastopt.commands.train", "train the NumPy MLP on spiral or digits data with one optimizer"),
    "compare": ("fastopt.commands.compare", "train the same MLP with every optimizer and tabulate the results"),
    "kernels": ("fastopt.commands.kernels", "show the CUDA kernels' PTX and ptxas registers/spills (no GPU needed)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``fastopt train: error: ... (see fastopt train --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastopt", description="Fused in-place optimizer steps, compiled with Numba.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def _version() -> str:
    from . import __version__

    return f"fastopt {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except (ValueError, TypeError, ImportError, OSError) as exc:
        print(f"fastopt {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
