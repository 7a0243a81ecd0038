import math

import numpy as np
import pytest

from results_folder.display import format_value, param_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0016048, "0.0016"),
        (1e-3, "0.001"),
        (0.5, "0.5"),
        (123.456, "123.5"),
        (12345.0, "1.23e+04"),
        (np.float32(0.25), "0.25"),
        (np.int64(751), "751"),
        (12, "12"),
        (None, "-"),
        (math.inf, "inf"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_param_text():
    assert param_text({"z_dim": 12, "fc_size": 751, "lr": 1.6048e-3}) == (
        "z_dim=12 fc_size=751 lr=0.0016"
    )
