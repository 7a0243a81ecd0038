"""The conv VAE, its loss, MNIST data and the training function. Knows nothing of Ray."""

from vae_core.config import TrainConfig
from vae_core.data import MnistSplits, load_mnist
from vae_core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    ResultsError,
    VaeSweepError,
)
from vae_core.evaluate import evaluate, latent_means
from vae_core.loss import ElboTerms, iwae_nll, negative_elbo
from vae_core.model import ConvVAE
from vae_core.train import TrainResult, train

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvVAE",
    "DataError",
    "DeviceError",
    "ElboTerms",
    "MnistSplits",
    "ResultsError",
    "TrainConfig",
    "TrainResult",
    "VaeSweepError",
    "evaluate",
    "iwae_nll",
    "latent_means",
    "load_mnist",
    "negative_elbo",
    "train",
]
