"""TrainConfig's validation: each bad value named in one ConfigError, every problem at once."""

import pytest

from vae_core import ConfigError, TrainConfig
from vae_core.config import MIN_BATCH_SIZE

BATCH_RULE = "batch_size must be an integer of at least 2 (BatchNorm needs 2 images per batch "
BATCH_RULE += "in training), but got "


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"batch_size": 1}, BATCH_RULE + "1"),
        ({"batch_size": 0}, BATCH_RULE + "0"),
        ({"batch_size": 64.0}, BATCH_RULE + "64.0"),
        ({"z_dim": 0}, "z_dim must be a positive integer, but got 0"),
        ({"lr": float("inf")}, "lr must be a positive finite number, but got inf"),
    ],
)
def test_a_bad_value_is_named_with_what_it_must_be(values, message):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**values)
    assert str(err.value) == f"invalid training config: {message}"


def test_the_smallest_batch_batchnorm_trains_on_is_accepted():
    assert MIN_BATCH_SIZE == 2
    assert TrainConfig(batch_size=2).batch_size == 2


def test_every_problem_is_listed_at_once():
    message = str(pytest.raises(ConfigError, TrainConfig, batch_size=1, epochs=0, seed=-1).value)
    assert "\n" not in message
    for name in ("batch_size", "epochs", "seed"):
        assert f"{name} must be" in message
