"""The `vae-sweep` command: parses arguments and calls the libraries; no logic of its own.

Each command is a module with `register(subparsers)` and `run(args) -> int`, as in Optuna's
CLI. Heavy imports (Ray, the analysis) wait inside the run functions so that `vae-sweep
--help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import NoReturn

from vae_core.errors import VaeSweepError
from vae_sweep import analyze, run, spaces, train

COMMANDS = (train, run, spaces, analyze)  # in the order `vae-sweep --help` lists them


class Parser(argparse.ArgumentParser):
    """argparse, with a bad option reported as one line like every other vae-sweep error
    (`--help` lists the options); the subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vae-sweep", description="Hyperparameter sweeps of a conv VAE on MNIST.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except VaeSweepError as err:
        if args.debug:
            traceback.print_exc()
        print(f"vae-sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vae-sweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
