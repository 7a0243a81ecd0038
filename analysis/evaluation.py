"""Test-set numbers of one model: IWAE bound (batched, with progress) and kNN digit accuracy.

The negative ELBO and active units come from vae_core.evaluate, the same code that validated
every epoch, so test and validation numbers are computed alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from tqdm import tqdm

from vae_core.evaluate import EVAL_SEED, to_float
from vae_core.loss import iwae_nll
from vae_core.model import ConvVAE

# Images per step, and samples per image decoded at once: 1,000 decodes (~200 MB per fp32
# activation tensor) whatever k is. Smaller steps were measured slower per decode on a CPU.
IWAE_BATCH = 100
IWAE_CHUNK = 10
KNN_K = 5  # scikit-learn's default neighbourhood


@torch.no_grad()
def iwae_bound(
    model: ConvVAE,
    images: torch.Tensor,
    *,
    k: int,
    batch_size: int = IWAE_BATCH,
    progress: bool = False,
) -> tuple[float, float]:
    """Mean IWAE upper bound on -log p(x) over `images` (nats/image), and its standard error.

    Burda et al. 2016: with k importance samples the bound tightens towards the true negative
    log-likelihood as k grows; k = 1 is the negative ELBO. Runs in fp32 in steps of
    `batch_size` images, so memory does not grow with k or the test-set size.
    """
    model.eval()
    noise = torch.Generator(device=images.device).manual_seed(EVAL_SEED)
    per_image = []
    with tqdm(
        total=len(images), desc=f"IWAE k={k}", unit="img", disable=not progress, leave=False
    ) as bar:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start : start + batch_size])
            per_image.append(iwae_nll(model, x, k, chunk=IWAE_CHUNK, generator=noise).double())
            bar.update(len(x))
    nll = torch.cat(per_image).cpu().numpy()
    stderr = float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else math.nan
    return float(nll.mean()), stderr


def knn_accuracy(
    train_z: np.ndarray,
    train_y: np.ndarray,
    test_z: np.ndarray,
    test_y: np.ndarray,
    *,
    k: int = KNN_K,
) -> float:
    """Share of test digits whose k nearest training latents (Euclidean) vote their label."""
    classifier = KNeighborsClassifier(n_neighbors=k).fit(train_z, train_y)
    return float(classifier.score(test_z, test_y))


@torch.no_grad()
def reconstructions(model: ConvVAE, images: torch.Tensor) -> np.ndarray:
    """Decoded posterior means: the model's deterministic reconstruction, (N, 28, 28) in [0, 1]."""
    model.eval()
    mu, _ = model.encode(to_float(images))
    return model.decode(mu).float().squeeze(1).cpu().numpy()


@torch.no_grad()
def prior_samples(model: ConvVAE, n: int, *, seed: int = EVAL_SEED) -> np.ndarray:
    """Pixel probabilities of n draws z ~ N(0, I), (n, 28, 28): what the model generates."""
    model.eval()
    device = next(model.parameters()).device
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    return model.decode(z).float().squeeze(1).cpu().numpy()
