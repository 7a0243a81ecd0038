import pytest
import torch

from vae_core import ConvVAE

# The post's ConvVAE (hidden size 400, z_dim 10), parameter by parameter, in definition order.
POST_SHAPES = [
    (64, 1, 3, 3),
    (64,),
    (64,),
    (64,),  # conv1, bn1
    (32, 64, 3, 3),
    (32,),
    (32,),
    (32,),  # conv2, bn2
    (400, 1568),
    (400,),
    (400,),
    (400,),  # fc1, fc_bn1
    (10, 400),
    (10,),
    (10, 400),
    (10,),  # mu, logvar heads
    (400, 10),
    (400,),
    (400,),
    (400,),  # decoder fc3, fc_bn3
    (1568, 400),
    (1568,),
    (1568,),
    (1568,),  # fc4, fc_bn4
    (64, 32, 3, 3),
    (64,),
    (64,),
    (64,),  # conv5, bn5
    (1, 64, 3, 3),
    (1,),  # conv6
]


def shapes_in_post_order(model):
    p = dict(model.named_parameters())
    names = (
        [n for n in p if n.startswith("encoder")]
        + [
            "fc_mu.weight",
            "fc_mu.bias",
            "fc_logvar.weight",
            "fc_logvar.bias",
        ]
        + [n for n in p if n.startswith("decoder")]
    )
    assert len(names) == len(p)
    return [tuple(p[n].shape) for n in names]


def test_default_model_has_the_posts_parameter_shapes():
    model = ConvVAE()
    assert shapes_in_post_order(model) == POST_SHAPES
    assert sum(p.numel() for p in model.parameters()) == sum(
        torch.Size(s).numel() for s in POST_SHAPES
    )


@pytest.mark.parametrize("z_dim,fc_size", [(2, 64), (10, 400), (32, 1024), (64, 100)])
def test_shapes(z_dim, fc_size):
    model = ConvVAE(z_dim, fc_size).eval()
    x = torch.rand(5, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == (5, 1, 28, 28)
    assert mu.shape == logvar.shape == (5, z_dim)
    probs = model.decode(torch.randn(3, z_dim))
    assert probs.shape == (3, 1, 28, 28)
    assert probs.min() >= 0 and probs.max() <= 1
