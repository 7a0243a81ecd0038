"""t-SNE of 10,000 real latent vectors: scikit-learn against openTSNE, seconds and trustworthiness.

    .venv/bin/python bench/tsne.py --data-root /work/shared/mnist   # full MNIST's IDX files
    .venv/bin/python bench/tsne.py       # ~/.cache/vae-sweep/mnist, else the 5k sample tiled

A model is trained briefly so the latents have the structure a real sweep's do; then both
libraries embed the same points, alternating run by run so machine load hits both alike, and
the medians are compared. Both start from PCA (the post's init="pca") with a fixed seed and
run the same schedule: 250 early-exaggeration iterations, then 750 (scikit-learn's
max_iter=1000). openTSNE is not a dependency (it was not faster: see BENCHMARKS.md); without
it only scikit-learn runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import numpy as np
import torch
from sklearn.manifold import TSNE, trustworthiness

from vae_core import TrainConfig, load_mnist, train
from vae_core.data import DEFAULT_ROOT
from vae_core.errors import DataError
from vae_core.evaluate import latent_means

TRUST_K = 10  # the analysis's trustworthiness neighbourhood


def real_latents(points: int, epochs: int, data_root: str, seed: int):
    """Latent means of `points` training images under a briefly trained model, and their source."""
    try:
        data = load_mnist("mnist", data_root)
    except DataError as err:
        print(f"full MNIST unavailable ({err}); using the 5k sample")
        data = load_mnist("mnist-5k")
    config = TrainConfig(epochs=epochs, seed=seed, data=data.source, precision="fp32", device="cpu")
    model = train(config, data=data).model
    images = data.train_x
    # The 5k sample has 4,000 training images: tile it to reach `points` vectors (repeats are
    # identical latents, which t-SNE handles; the timing still covers `points` vectors).
    reps = -(-points // len(images))
    images = images.repeat(reps, 1, 1, 1)[:points]
    z = latent_means(model, images).numpy().astype(np.float64)
    source = data.source if reps == 1 else f"{data.source} tiled x{reps}"
    return z, source


def sklearn_tsne(z: np.ndarray, seed: int, threads: int) -> np.ndarray:
    return TSNE(
        n_components=2, init="pca", random_state=seed, max_iter=1000, n_jobs=threads
    ).fit_transform(z)


def open_tsne(z: np.ndarray, seed: int, threads: int) -> np.ndarray:
    from openTSNE import TSNE as OpenTSNE

    return np.asarray(
        OpenTSNE(
            n_components=2,
            initialization="pca",
            random_state=seed,
            early_exaggeration_iter=250,
            n_iter=750,
            n_jobs=threads,
            negative_gradient_method="fft",
        ).fit(z)
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=10_000)
    p.add_argument("--epochs", type=int, default=1, help="training epochs for the latents")
    p.add_argument(
        "--data-root",
        default=str(DEFAULT_ROOT),
        help="folder with the full MNIST IDX files; without them the 5k sample is "
        "tiled (default: %(default)s)",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per library (median reported)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    z, source = real_latents(args.points, args.epochs, args.data_root, args.seed)
    print(
        f"latents: {z.shape[0]} x {z.shape[1]} from {source}, model trained {args.epochs} "
        f"epoch(s) in {time.perf_counter() - t0:.0f} s; {args.threads} threads"
    )

    runs = {"scikit-learn": (sklearn_tsne, []), "openTSNE": (open_tsne, [])}
    if importlib.util.find_spec("openTSNE") is None:  # not a dependency of vae-sweep
        print("openTSNE is not installed (pip install openTSNE): scikit-learn only")
        del runs["openTSNE"]
    cpu = {name: [] for name in runs}  # CPU seconds of all threads: less sensitive to load
    trust = {}
    for rep in range(args.repeats):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))  # alternate who goes first
        for name in order:
            embed, seconds = runs[name]
            start, start_cpu = time.perf_counter(), time.process_time()
            y = embed(z, args.seed, args.threads)
            seconds.append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            if name not in trust:  # seeded: every repeat gives the same map
                trust[name] = trustworthiness(z, y, n_neighbors=TRUST_K)
            print(f"  run {rep + 1} {name:12s} {seconds[-1]:6.1f} s ({cpu[name][-1]:.1f} CPU s)")

    medians = {name: statistics.median(seconds) for name, (_, seconds) in runs.items()}
    for name, median in medians.items():
        print(
            f"{name:12s} median {median:6.1f} s ({statistics.median(cpu[name]):.1f} CPU s) "
            f"over {args.repeats} runs, trustworthiness(k={TRUST_K}) {trust[name]:.4f}"
        )
    if "openTSNE" in medians:
        ratio = medians["scikit-learn"] / medians["openTSNE"]
        print(f"ratio scikit-learn / openTSNE: {ratio:.2f}x (above 1: openTSNE is faster)")


if __name__ == "__main__":
    main()
