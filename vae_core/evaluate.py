"""Evaluation on a whole split: the negative ELBO of every image, summarised honestly.

One image can be far out of the training distribution (MNIST's t10k has a few heavily inked
digits). The summary therefore gives, beside the mean that papers report, the median, the 99th
percentile and the images far beyond the rest, and `robust_loss`, the mean with each such
image's value capped at the outlier fence, which is what the sweep optimises: one image cannot
move it by more than fence / N.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vae_core.loss import negative_elbo
from vae_core.model import ConvVAE

EVAL_SEED = 1234  # the same noise every evaluation, so epochs and trials compare fairly
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Var_x E_q[z_d] above this counts as active
# An image is an outlier when its negative ELBO lies more than OUTLIER_IQRS interquartile
# ranges above the upper quartile. Tukey's "far out" fence is 3 IQRs, which a right-skewed
# loss distribution crosses with ordinary hard digits; 10 (625 nats for the quick sweep's best
# model, whose median is 126) flags only images the model does not describe at all, such as
# the few that reach thousands of nats.
OUTLIER_IQRS = 10.0
# Training images whose batch statistics re-estimate BatchNorm's running statistics before
# every evaluation (see recalibrate_batchnorm).
BATCHNORM_IMAGES = 2048


@dataclass(frozen=True)
class Evaluation:
    """Per-image negative ELBO over a split, in nats per image."""

    loss: float  # mean over all images, summed in float64 (the number papers report)
    recon: float  # mean reconstruction part
    kl: float  # mean KL part
    median: float
    p99: float  # 99th percentile
    robust_loss: float  # the mean with outliers capped at the fence; equals loss without them
    fence: float  # Q3 + OUTLIER_IQRS * IQR: values above it are outliers
    outliers: tuple[int, ...]  # indices into the evaluated images, worst first
    outlier_losses: tuple[float, ...]  # their negative ELBO, same order
    active_units: int


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1, 28, 28) -> float in [0, 1], as torchvision's ToTensor gives."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def recalibrate_batchnorm(
    model: ConvVAE,
    images: torch.Tensor,
    *,
    batch_size: int,
    n_images: int = BATCHNORM_IMAGES,
    precision: str = "fp32",
) -> None:
    """Re-estimate every BatchNorm's running statistics for the current weights.

    Training keeps an exponential average (momentum 0.1) of batch statistics taken while the
    weights moved; at a high learning rate it lags them, and in eval mode a rare input then
    meets statistics no batch had and its log-variance explodes. This recomputes
    them as a plain average over a fixed set of training batches (the "precise BatchNorm" of
    Wu & Johnson 2021), with fixed noise, so resumed runs evaluate alike.
    """
    batch_size = max(batch_size, 2)  # training-mode BatchNorm needs two images per batch
    n = min(n_images, len(images)) // batch_size * batch_size
    if n == 0:
        return
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    device = images.device
    # Fixed noise, since the decoder's statistics depend on the sampled z: a generator of our
    # own draws what the global one seeded with EVAL_SEED would, and leaves the global random
    # state to its owner: reseeding it here would reset whatever the caller draws next.
    noise = torch.Generator(device=device).manual_seed(EVAL_SEED)
    with autocast(device, precision):
        for k, start in enumerate(range(0, n, batch_size), start=1):
            # Momentum 1/k makes the running statistics the plain average of the first k
            # batches'. torch's update_bn gets there with momentum None, where BatchNorm reads
            # its batch count off the GPU: a host sync per layer and batch (96 per evaluation
            # at batch 128), each one waiting out the other trials' turns on a shared GPU.
            for m in norms:
                m.momentum = 1.0 / k
            model(to_float(images[start : start + batch_size]), generator=noise)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def per_image_elbo(
    model: ConvVAE, images: torch.Tensor, *, batch_size: int = 1024, precision: str = "fp32"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Negative ELBO, reconstruction and KL of every image, each (N,) float64, and the
    posterior means (N, z_dim) float32; all on the images' device."""
    model.eval()
    device = images.device
    noise = torch.Generator(device=device).manual_seed(EVAL_SEED)
    recon, kl, means = [], [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size])
        with autocast(device, precision):
            logits, mu, logvar = model(x, generator=noise)
        terms = negative_elbo(logits, x, mu, logvar, reduction="none")
        recon.append(terms.recon.double())
        kl.append(terms.kl.double())
        means.append(mu.float())
    recon_all, kl_all = torch.cat(recon), torch.cat(kl)
    return recon_all + kl_all, recon_all, kl_all, torch.cat(means)


def evaluate(
    model: ConvVAE, images: torch.Tensor, *, batch_size: int = 1024, precision: str = "fp32"
) -> Evaluation:
    """Summarise the per-image negative ELBO of `images` (see the module docstring)."""
    total, recon, kl, means = per_image_elbo(
        model, images, batch_size=batch_size, precision=precision
    )
    return summarize(total.cpu(), recon.cpu(), kl.cpu(), active_units(means))


def summarize(
    total: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor, active: int = 0
) -> Evaluation:
    """The Evaluation of per-image values (N,) float64 on the CPU."""
    finite = total[torch.isfinite(total)]
    if len(finite) == 0:
        nan = float("nan")
        return Evaluation(nan, nan, nan, nan, nan, nan, nan, (), (), active)
    q1, median, q3, p99 = torch.quantile(
        finite, torch.tensor([0.25, 0.5, 0.75, 0.99], dtype=finite.dtype)
    ).tolist()
    fence = q3 + OUTLIER_IQRS * (q3 - q1)
    # NaN counts as an outlier too: it is the most extreme value there is.
    far = ~(total <= fence)
    order = torch.argsort(total.nan_to_num(nan=float("inf")), descending=True)
    worst = order[far[order]].tolist()
    return Evaluation(
        loss=total.mean().item(),
        recon=recon.mean().item(),
        kl=kl.mean().item(),
        median=median,
        p99=p99,
        robust_loss=torch.where(far, fence, total).mean().item(),
        fence=fence,
        outliers=tuple(worst),
        outlier_losses=tuple(total[worst].tolist()),
        active_units=active,
    )


def outlier_text(
    count: int, fence: float, worst: list[tuple[int, float | None]], *, shown: int = 5
) -> str:
    """'no outlier images (fence 612.30)' or '2 outlier images above 612.30 (test 3841:
    2.9e+04, test 17: 701.2)': how `vae-sweep train` and `vae-sweep analyze` both say it."""
    if not count:
        return f"no outlier images (fence {fence:.2f})"
    listed = ", ".join(
        f"test {i}: {v if v is not None else float('nan'):.4g}" for i, v in worst[:shown]
    )
    more = f", {count - shown} more" if count > shown else ""
    return f"{count} outlier image{'s' * (count > 1)} above {fence:.2f} ({listed}{more})"


@torch.no_grad()
def latent_means(
    model: ConvVAE, images: torch.Tensor, *, batch_size: int = 1024, precision: str = "fp32"
) -> torch.Tensor:
    """Posterior means E_q[z | x] for every image, (N, z_dim) float32 on the images' device."""
    model.eval()
    device = images.device
    out = []
    for start in range(0, len(images), batch_size):
        with autocast(device, precision):
            mu, _ = model.encode(to_float(images[start : start + batch_size]))
        out.append(mu.float())
    return torch.cat(out)


def active_units(means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies across the data by more than threshold."""
    if len(means) < 2:
        return 0
    return int((means.var(dim=0) > threshold).sum().item())
