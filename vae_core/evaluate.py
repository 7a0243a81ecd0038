"""Evaluation on a whole split: negative ELBO parts, active units and latent means."""

from __future__ import annotations

import torch

from vae_core.loss import negative_elbo
from vae_core.model import ConvVAE

EVAL_SEED = 1234  # the same noise every evaluation, so epochs and trials compare fairly
ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: Var_x E_q[z_d] above this counts as active


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1, 28, 28) -> float in [0, 1], as torchvision's ToTensor gives."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


@torch.no_grad()
def evaluate(
    model: ConvVAE, images: torch.Tensor, *, batch_size: int = 1024, precision: str = "fp32"
) -> dict[str, float]:
    """Mean negative ELBO, its reconstruction and KL parts (nats per image), and active units."""
    model.eval()
    device = images.device
    noise = torch.Generator(device=device).manual_seed(EVAL_SEED)
    totals = torch.zeros(3, device=device, dtype=torch.float64)
    means = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size])
        with autocast(device, precision):
            logits, mu, logvar = model(x, generator=noise)
        terms = negative_elbo(logits, x, mu, logvar, reduction="sum")
        totals += torch.stack([t.double() for t in terms])
        means.append(mu.float())
    loss, recon, kl = (totals / len(images)).tolist()  # one host sync per evaluation
    return {"loss": loss, "recon": recon, "kl": kl, "active_units": active_units(torch.cat(means))}


def active_units(means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies across the data by more than threshold."""
    if len(means) < 2:
        return 0
    return int((means.var(dim=0) > threshold).sum().item())
