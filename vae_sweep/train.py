"""`vae-sweep train`: one model trained into a folder.

Its options are generated from TrainConfig's fields (`--z-dim` from `z_dim`, the default from
the field's), so a default is written once, in vae_core/config.py; only the help texts live here.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from vae_core.config import CHOICES, TrainConfig
from vae_sweep.options import DATA_HELP, DATA_ROOT_HELP, one_of

# One per TrainConfig field: a new field without a help text fails every `vae-sweep` call.
HELP = {
    "z_dim": "latent size (default: %(default)s, the post's)",
    "fc_size": "hidden layer size (default: %(default)s)",
    "lr": "Adam learning rate (default: %(default)s)",
    "lr_schedule": "constant, or cosine: annealed from --lr to 0 over the run's steps "
    "(default: %(default)s)",
    "batch_size": "training batch size (default: %(default)s)",
    "epochs": "epochs to train (default: %(default)s)",
    "seed": "initialisation, shuffling and sampling noise (default: %(default)s)",
    "data": DATA_HELP,
    "data_root": DATA_ROOT_HELP,
    "train_limit": "train on the first N training images only (quick runs; default: all)",
    "device": "auto, cpu or cuda (default: %(default)s)",
    "precision": "auto, fp32 or bf16 (default: %(default)s = bf16 where the hardware has it)",
    "compile": "use torch.compile (default: %(default)s)",
    "cuda_graph": "on CUDA, replay the whole training step as one CUDA graph "
    "(default: %(default)s)",
    "threads": "torch CPU threads (default: torch's own choice)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train one model and write metrics.parquet and model.pt"
    )
    add_config_options(parser)
    parser.add_argument("--out", default="runs/train", help="output folder (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    parser.set_defaults(run=run)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, with the field's type and default."""
    types = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        value_type = _value_type(types[field.name])
        if value_type is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=field.default,
                help=HELP[field.name],
            )
        elif field.name in CHOICES:
            parser.add_argument(
                flag,
                type=one_of(field.name, CHOICES[field.name]),
                choices=CHOICES[field.name],
                default=field.default,
                help=HELP[field.name],
            )
        else:
            parser.add_argument(flag, type=value_type, default=field.default, help=HELP[field.name])


def _value_type(hint: object) -> type:
    """int from `int` or from `int | None` (None is the option's default, never typed)."""
    (value_type,) = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
    return value_type


def config_from(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(TrainConfig)}
    )


def run(args: argparse.Namespace) -> int:
    from vae_core.evaluate import outlier_text
    from vae_sweep.train_folder import train_to_folder

    done = train_to_folder(config_from(args), args.out, force=args.force)
    where = f"{done.device}, {done.precision}, data {done.data}"
    if done.diverged:
        print(
            f"training diverged at epoch {done.epochs} (its loss was not finite or grew "
            f"past 10x its best; {where}); {args.out}/model.pt holds the last sound epoch, if any"
        )
        return 1
    test = done.test
    outliers = outlier_text(
        len(test.outliers),
        test.fence,
        list(zip(test.outliers, test.outlier_losses, strict=True)),
    )
    print(
        f"val negative ELBO {done.val_mean:.2f} nats; test negative ELBO "
        f"{test.loss:.2f} nats (recon {test.recon:.2f} + KL "
        f"{test.kl:.2f}), median {test.median:.2f}, 99th percentile "
        f"{test.p99:.2f}, {outliers}; after {done.epochs} epochs "
        f"({where}); wrote {args.out}/metrics.parquet and {args.out}/model.pt"
    )
    return 0
