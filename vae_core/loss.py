"""The negative ELBO (Kingma & Welling 2014) and the IWAE bound (Burda et al. 2016), in nats."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class ElboTerms(NamedTuple):
    total: torch.Tensor  # reconstruction + KL
    recon: torch.Tensor  # Bernoulli negative log-likelihood summed over the 784 pixels
    kl: torch.Tensor  # KL(q(z|x) || N(0, I)), analytic


def negative_elbo(
    logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    reduction: str = "mean",
) -> ElboTerms:
    """Per-image negative ELBO; `reduction` is "mean" or "sum" over the batch, or "none".

    Logits with `binary_cross_entropy_with_logits` equal the post's sigmoid + BCE, but stay
    finite where the sigmoid saturates. Terms are computed in fp32 even under bf16 autocast.
    """
    recon = (
        F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none")
        .flatten(1)
        .sum(1)
    )  # (B,)
    mu, logvar = mu.float(), logvar.float()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)  # (B,)
    if reduction == "mean":
        recon, kl = recon.mean(), kl.mean()
    elif reduction == "sum":
        recon, kl = recon.sum(), kl.sum()
    elif reduction != "none":
        raise ValueError(f"reduction must be mean, sum or none, but got {reduction!r}")
    return ElboTerms(recon + kl, recon, kl)


@torch.no_grad()
def iwae_nll(
    model: torch.nn.Module,
    x: torch.Tensor,
    k: int = 100,
    *,
    chunk: int = 25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-weighted upper bound on -log p(x) per image, (B,), with k samples.

    -log p(x) <= -log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x)  (Burda et al. 2016).
    Samples are drawn `chunk` at a time so memory stays bounded for any k.
    """
    mu, logvar = model.encode(x)
    mu, logvar = mu.float(), logvar.float()
    std = torch.exp(0.5 * logvar)
    log_w = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        eps = torch.randn((n, *mu.shape), device=mu.device, generator=generator)
        z = mu + eps * std  # (n, B, z_dim)
        logits = model.decode_logits(z.flatten(0, 1)).float()  # (n*B, 1, 28, 28)
        target = x.float().expand(n, *x.shape).flatten(0, 1)
        log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        log_px_z = log_px_z.flatten(1).sum(1).view(n, -1)  # (n, B)
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + logvar + math.log(2 * math.pi)).sum(-1)
        log_w.append(log_px_z + log_pz - log_qz)
    return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))
