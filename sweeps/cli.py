"""The `vae-sweep` command: parses arguments and calls the library; no logic of its own.

Each subcommand is a (register, run) pair in COMMANDS. Heavy imports (torch, Ray) happen
inside the run functions so `vae-sweep --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback

from vae_core.errors import VaeSweepError

log = logging.getLogger("vae_sweep")


# --- vae-sweep train ---------------------------------------------------------------------------


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one model and write metrics.parquet and model.pt")
    p.add_argument("--z-dim", type=int, default=10, help="latent size (default: 10, the post's)")
    p.add_argument("--fc-size", type=int, default=400, help="hidden layer size (default: 400)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    add_data_options(p)
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="train on the first N training images only (quick runs)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto, fp32 or bf16 (default: auto = bf16 where the hardware has it)",
    )
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.set_defaults(run=run_train)


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="auto",
        help="auto, mnist or mnist-5k (default: auto = full MNIST if found or "
        "downloadable, else the 5k sample)",
    )
    p.add_argument(
        "--data-root",
        default=None,
        help="folder with the MNIST IDX files (default: ~/.cache/vae-sweep/mnist)",
    )


def run_train(args: argparse.Namespace) -> int:
    from vae_core.config import TrainConfig
    from vae_core.single_run import train_to_folder

    config = TrainConfig(
        z_dim=args.z_dim,
        fc_size=args.fc_size,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        data=args.data,
        data_root=args.data_root,
        train_limit=args.train_limit,
        device=args.device,
        precision=args.precision,
        compile=args.compile,
        threads=args.threads,
    )
    summary = train_to_folder(config, args.out, force=args.force)
    where = f"{summary['device']}, {summary['precision']}, data {summary['data']}"
    if summary["diverged"]:
        print(
            f"diverged at epoch {summary['epochs']} (loss not finite; {where}); "
            f"{args.out}/model.pt holds the last finite epoch, if any"
        )
        return 1
    print(
        f"val negative ELBO {summary['val_loss']:.2f} nats, test negative ELBO "
        f"{summary['test_loss']:.2f} nats (recon {summary['test_recon']:.2f} + KL "
        f"{summary['test_kl']:.2f}) after {summary['epochs']} epochs ({where}); "
        f"wrote {args.out}/metrics.parquet and {args.out}/model.pt"
    )
    return 0


COMMANDS = [add_train]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vae-sweep", description="Hyperparameter sweeps of a conv VAE on MNIST."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
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
