"""The conv VAE of the classic MNIST conv-VAE post, with its hidden and latent sizes as parameters.

Kingma & Welling, "Auto-Encoding Variational Bayes" (2014): an encoder q(z|x) = N(mu, diag(var)),
a decoder p(x|z) = Bernoulli(sigmoid(logits)), trained through the reparameterisation trick.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FLAT = 32 * 7 * 7  # encoder output after two 2x poolings of a 28x28 image: 1568
# Soft upper bound on the posterior log-variance: our one deviation from the post's model.
# Its linear head is unbounded, and an input unlike the training digits can push it past 88,
# where exp() overflows fp32 and that one image makes the whole test mean infinite. A variance
# above e^4 ~ 55 times the prior's is never useful (the KL term alone costs >= 24 nats per
# dimension), and below ~0, where trained posteriors live, the bound changes nothing:
# LOGVAR_MAX - softplus(LOGVAR_MAX - v) differs from v by less than 0.02 for v <= 0.
LOGVAR_MAX = 4.0


class ConvVAE(nn.Module):
    def __init__(
        self, z_dim: int = 10, fc_size: int = 400, *, logvar_max: float | None = LOGVAR_MAX
    ) -> None:
        super().__init__()
        self.z_dim, self.fc_size = z_dim, fc_size
        self.logvar_max = logvar_max  # None: the post's unbounded head (for comparisons)
        # The post puts ReLU before BatchNorm; kept as is so results compare with it.
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(64), nn.MaxPool2d(2),
            nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(32), nn.MaxPool2d(2),
            nn.Flatten(),  # (B, 1568)
            nn.Linear(FLAT, fc_size), nn.ReLU(), nn.BatchNorm1d(fc_size),
        )  # fmt: skip
        self.fc_mu = nn.Linear(fc_size, z_dim)
        self.fc_logvar = nn.Linear(fc_size, z_dim)
        self.decoder = nn.Sequential(
            nn.Linear(z_dim, fc_size), nn.ReLU(), nn.BatchNorm1d(fc_size),
            nn.Linear(fc_size, FLAT), nn.ReLU(), nn.BatchNorm1d(FLAT),
            nn.Unflatten(1, (32, 7, 7)),
            nn.Upsample(scale_factor=2, mode="nearest"),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(64),
            nn.Upsample(scale_factor=2, mode="nearest"),  # (B, 64, 28, 28)
            nn.Conv2d(64, 1, 3, padding=1),
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, 1, 28, 28) in [0, 1] -> mean and log-variance, each (B, z_dim)."""
        h = self.encoder(x)
        logvar = self.fc_logvar(h)
        if self.logvar_max is not None:
            logvar = self.logvar_max - F.softplus(self.logvar_max - logvar)
        return self.fc_mu(h), logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, z_dim) -> Bernoulli logits (B, 1, 28, 28); the loss works on logits."""
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, z_dim) -> pixel probabilities (B, 1, 28, 28)."""
        return torch.sigmoid(self.decode_logits(z))

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(std.shape, dtype=std.dtype, device=std.device, generator=generator)
        return mu + eps * std

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        return self.decode_logits(z), mu, logvar
