"""`vae-sweep run` against the sweep a user writes by hand from Ray Tune's PyTorch tutorial.

The hand-written side follows https://docs.ray.io/en/latest/tune/examples/pytorch_tutorial.html:
each trial loads the data itself into a DataLoader, trains the post's model in fp32 eagerly
(sigmoid + BCE, loss.item() every step), and calls tune.report with a torch.save checkpoint
every epoch; OptunaSearch + ASHA (grace 1, reduction 2). vae-sweep runs the same number of
trials and epochs with the same ASHA settings and the same GPU share, each side in a local Ray
of its own (vae-sweep's started as `vae-sweep run` starts it: with no option, its trials share
the GPU under NVIDIA MPS where it runs, else take turns on it; `--mps` or `--time-sliced`
choose, as they do for `vae-sweep run`); the wall times (the script's
Tuner.fit; vae-sweep's whole run_sweep, its data loading included) and the best validation
losses (nats per image, the same 5,000 validation images) are printed with their ratio, and the
epochs each side trained (ASHA stops each side's trials on its own results, so the counts may
differ; the seconds per epoch trained compare the two without that); with `--rounds N`, each
side runs N times, taking turns at going first, and the medians are compared.

    python bench/tune_tutorial.py --data-root ../shared/mnist          # 16 trials x 4 epochs
    python bench/tune_tutorial.py --data mnist                         # as `vae-sweep run`
    python bench/tune_tutorial.py --data mnist --rounds 3              # medians of 3 each
    python bench/tune_tutorial.py --data mnist --time-sliced           # processes take turns
    python bench/tune_tutorial.py --gpus-per-trial 0 --trials 2 --epochs 1 --train-limit 500
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from torch.utils.data import DataLoader, TensorDataset

from search_spaces import load_space
from sweeps import run_sweep
from sweeps.config import LOCAL_NODE_IP, SweepConfig
from sweeps.local_ray import ray_session
from sweeps.quiet import quiet_ray_and_optuna
from sweeps.sharing import gpu_sharing
from vae_core import ConvVAE, load_mnist
from vae_sweep.run import add_sharing_options


def train_vae(config: dict) -> None:
    """The tutorial's trainable: everything set up inside the trial, nothing shared."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_mnist(config["data"], config["data_root"]).limit_train(config["train_limit"])
    train_set = TensorDataset(data.train_x.float() / 255)
    val_set = TensorDataset(data.val_x.float() / 255)
    trainloader = DataLoader(train_set, batch_size=config["batch_size"], shuffle=True)
    valloader = DataLoader(val_set, batch_size=config["batch_size"])
    # the post's model as a user copies it: its unbounded log-variance head
    model = ConvVAE(config["z_dim"], config["fc_size"], logvar_max=None).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    for _ in range(config["epochs"]):
        model.train()
        running_loss = 0.0
        for (x,) in trainloader:
            x = x.to(device)
            optimizer.zero_grad()
            logits, mu, logvar = model(x)
            bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = bce + kld
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
        model.eval()
        val_loss = 0.0
        with torch.no_grad():
            for (x,) in valloader:
                x = x.to(device)
                logits, mu, logvar = model(x)
                bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")
                kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
                val_loss += (bce + kld).item()
        with tempfile.TemporaryDirectory() as folder:
            torch.save(
                (model.state_dict(), optimizer.state_dict()), os.path.join(folder, "checkpoint.pt")
            )
            tune.report(
                {"val_loss": val_loss / len(val_set), "train_loss": running_loss / len(train_set)},
                checkpoint=tune.Checkpoint.from_directory(folder),
            )


def tutorial_sweep(args, storage: str) -> tuple[float, float, int]:
    """The hand-written sweep; returns (wall seconds, best validation loss, epochs trained)."""
    space = {
        "z_dim": tune.lograndint(2, 65),
        "fc_size": tune.randint(64, 1025),
        "lr": tune.loguniform(1e-4, 1e-2),
        "batch_size": 128,
        "epochs": args.epochs,
        "data": args.data,
        "data_root": os.path.abspath(args.data_root) if args.data_root else None,
        "train_limit": args.train_limit or None,
    }
    resources = {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(train_vae, resources),
        param_space=space,
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="val_loss", mode="min", seed=args.seed),
            scheduler=ASHAScheduler(
                metric="val_loss", mode="min", max_t=args.epochs, grace_period=1, reduction_factor=2
            ),
            num_samples=args.trials,
        ),
        run_config=tune.RunConfig(name="tutorial", storage_path=storage, verbose=0),
    )
    t0 = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - t0
    epochs = sum(int((r.metrics or {}).get("training_iteration", 0)) for r in results)
    return wall, results.get_best_result("val_loss", "min").metrics["val_loss"], epochs


def vae_sweep(args, storage: str) -> tuple[str, float, float, int]:
    """`vae-sweep run` with the same trials, epochs, ASHA settings and resources: the way its
    trials shared the GPU, its wall time, best validation loss and epochs trained."""
    space = load_space("default")
    fixed = {**space.fixed, "train_limit": args.train_limit or None}
    space = replace(space, fixed=fixed, grace_period=1, reduction_factor=2)
    config = SweepConfig(
        name="vae-sweep",
        space=space,
        samples=args.trials,
        epochs=args.epochs,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        data=args.data,
        data_root=args.data_root,
        seed=args.seed,
        storage=storage,
        node_ip=args.node_ip,
        sharing=args.sharing,
    )
    with gpu_sharing(config) as (way, env), ray_session(None, args.node_ip, worker_env=env):
        t0 = time.perf_counter()
        outcome = run_sweep(config)
        wall = time.perf_counter() - t0
    epochs = int(outcome.trials["epochs_run"].sum())
    return way, wall, float(outcome.best()["best_val_loss"]), epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--gpus-per-trial", type=float, default=0.25)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-root", default=None)
    p.add_argument("--train-limit", type=int, default=0, help="0: all training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=1, help="each side this often; medians printed")
    p.add_argument("--node-ip", default=LOCAL_NODE_IP)
    add_sharing_options(p)  # vae-sweep's side
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet_ray_and_optuna()

    storage = tempfile.mkdtemp(prefix="vae-sweep-tutorial-")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"{args.trials} trials x up to {args.epochs} epochs, {args.gpus_per_trial:g} GPU and "
        f"{args.cpus_per_trial:g} CPU per trial, data {args.data}, gpu {gpu}"
    )
    option = "" if args.sharing == "auto" else f" --{args.sharing}"
    width = len(f"vae-sweep run{option} (time-sliced):") + 1  # the longest a label gets
    theirs, ours = [], []  # (wall seconds, epochs trained) per round
    for r in range(args.rounds):
        folder = os.path.join(storage, f"round-{r}")
        # Each side in turn goes first: a machine that warms up (or wears out) over the run
        # favours neither.
        for side in ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours"):
            if side == "ours":
                way, wall, best, epochs = vae_sweep(args, folder)
                ours.append((wall, epochs))
                label = f"vae-sweep run{option} ({way}):"
            else:
                with ray_session(None, args.node_ip):
                    wall, best, epochs = tutorial_sweep(args, folder)
                theirs.append((wall, epochs))
                label = "hand-written Tune script:"
            print(
                f"{label:<{width}}{wall:.1f} s, {epochs} epochs, best val loss {best:.2f}",
                flush=True,
            )
        print(f"round {r + 1}: {comparison(theirs[-1:], ours[-1:])}", flush=True)
    if args.rounds > 1:
        print(f"medians of {args.rounds} rounds: {comparison(theirs, ours)}")


def comparison(theirs: list[tuple[float, int]], ours: list[tuple[float, int]]) -> str:
    """How much faster vae-sweep was, from the medians of (wall seconds, epochs) per round:
    in wall time, and per epoch trained."""
    wall_t, wall_o = (statistics.median(w for w, _ in side) for side in (theirs, ours))
    per_t, per_o = (statistics.median(w / max(e, 1) for w, e in side) for side in (theirs, ours))
    return (
        f"hand-written {wall_t:.1f} s, vae-sweep {wall_o:.1f} s: vae-sweep is "
        f"{wall_t / wall_o:.2f}x faster ({per_t:.2f} s and {per_o:.2f} s per epoch trained: "
        f"{per_t / per_o:.2f}x)"
    )


if __name__ == "__main__":
    main()
