"""`vae-sweep spaces`: the shipped search spaces, or the given YAML files, checked and shown."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "spaces",
        help="list the shipped search spaces, or check YAML files",
        description="Show the shipped search spaces, or validate and show the given space files.",
    )
    parser.add_argument(
        "spaces",
        nargs="*",
        metavar="SPACE",
        help="shipped names or YAML files (default: every shipped space)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from search_spaces import load_space, shipped_spaces

    for i, name in enumerate(args.spaces or shipped_spaces()):
        space = load_space(name)
        asha = f"ASHA grace {space.grace_period}, reduction {space.reduction_factor}"
        print(("\n" if i else "") + f"{space.name}: {space.description}")
        print(f"  {space.samples} trials, up to {space.epochs} epochs, {asha}; {space.path}")
        for param in space.params:
            print(f"  {param.name:<10} {param.describe()}")
        fixed = " ".join(f"{k}={v}" for k, v in space.fixed.items())
        print(f"  fixed: {fixed}")
    return 0
