"""Evaluation numbers one image cannot break: the bounded log-variance, outliers, BatchNorm."""

import math

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from vae_core import ConvVAE
from vae_core.evaluate import (
    EVAL_SEED,
    OUTLIER_IQRS,
    evaluate,
    per_image_elbo,
    recalibrate_batchnorm,
    summarize,
    to_float,
)
from vae_core.model import LOGVAR_MAX


def values(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def summary_of(losses):
    return summarize(losses, losses - 5, torch.full_like(losses, 5.0))


def test_a_healthy_spread_has_no_outliers_and_robust_loss_is_the_mean():
    losses = torch.linspace(80, 200, 1000, dtype=torch.float64)
    s = summary_of(losses)
    assert s.outliers == () and s.robust_loss == pytest.approx(s.loss) == pytest.approx(140)
    assert s.median == pytest.approx(140) and 198 < s.p99 < 200
    assert s.recon + s.kl == pytest.approx(s.loss)


def test_one_exploding_image_is_listed_and_cannot_move_robust_loss():
    losses = torch.linspace(80, 200, 1000, dtype=torch.float64)
    losses[417] = 1e31
    s = summary_of(losses)
    q1, q3 = torch.quantile(losses, torch.tensor([0.25, 0.75], dtype=torch.float64)).tolist()
    assert s.fence == pytest.approx(q3 + OUTLIER_IQRS * (q3 - q1))
    assert s.outliers == (417,) and s.outlier_losses == (1e31,)
    assert s.loss > 1e27  # the plain mean says what happened
    # the capped mean moved by at most fence / N from the mean of the other 999
    assert abs(s.robust_loss - 140) < s.fence / 1000 + 0.1
    assert s.median == pytest.approx(140, abs=0.2)


def test_non_finite_images_are_outliers_worst_first():
    losses = values(*range(100, 200), math.nan, 5e5, math.inf)
    s = summary_of(losses)
    assert s.outliers == (100, 102, 101)  # NaN ranks first, then inf, then 5e5
    assert math.isfinite(s.robust_loss) and s.robust_loss < 200


def ink_detector(z_dim=16, fc_size=32):
    """A ConvVAE whose encoder reports how far an image's ink exceeds half the pixels: zero for
    every real digit (~20% ink), large for a fully inked square, which gets a posterior
    log-variance of 1,000: the out-of-distribution input that overflows an unbounded head."""
    model = ConvVAE(z_dim, fc_size)
    model.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, fc_size), nn.ReLU())
    with torch.no_grad():
        model.encoder[1].weight.zero_()
        model.encoder[1].weight[0] = 1 / 784  # mean ink
        model.encoder[1].bias.zero_()
        model.encoder[1].bias[0] = -0.5
        for head in (model.fc_mu, model.fc_logvar):
            head.weight.zero_()
            head.bias.zero_()
        model.fc_logvar.weight[:, 0] = 2000.0  # ink 1.0 -> raw log-variance 1,000
    return model.eval()


def test_an_exploding_log_variance_gives_a_finite_result_and_an_outlier(sample):
    images = torch.cat([sample.val_x[:200], torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)])
    model = ink_detector()
    with torch.no_grad():
        _, logvar = model.encode(to_float(images))
    assert logvar[:200].abs().max() < 0.02 and logvar[200].min().item() == pytest.approx(LOGVAR_MAX)

    s = evaluate(model, images)
    assert all(math.isfinite(v) for v in (s.loss, s.robust_loss, s.median, s.p99))
    assert s.outliers == (200,)  # the inked square, by its index among the inputs
    # KL per dimension at the bound, documented in model.py: 0.5 * (e^4 - 4 - 1) = 24.8 nats
    _, _, kl, _ = per_image_elbo(model, images)
    assert kl[200].item() == pytest.approx(16 * 0.5 * (math.exp(LOGVAR_MAX) - LOGVAR_MAX - 1))

    model.logvar_max = None  # the post's unbounded head: exp(1000) overflows
    unbounded = evaluate(model, images)
    assert not math.isfinite(unbounded.loss) and unbounded.outliers[0] == 200
    assert math.isfinite(unbounded.robust_loss) and math.isfinite(unbounded.median)


def test_the_bound_leaves_trained_posteriors_alone():
    raw = torch.linspace(-12, 0, 50)
    model = ConvVAE()
    bounded = LOGVAR_MAX - nn.functional.softplus(LOGVAR_MAX - raw)
    assert (bounded - raw).abs().max() < 0.02 and model.logvar_max == LOGVAR_MAX


def test_recalibrated_batchnorm_matches_the_batch_statistics(sample):
    torch.manual_seed(0)
    model = ConvVAE(8, 64)
    images = sample.train_x[:256]
    # Stale statistics, as a fast-moving training run leaves them.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            module.running_mean.fill_(3.0)
            module.running_var.fill_(0.01)
    recalibrate_batchnorm(model, images, batch_size=256, n_images=256)
    assert not model.training
    x = to_float(images)
    with torch.no_grad():
        in_eval = model.encoder(x)
        model.train()
        in_train = model.encoder(x)
    # One batch of all the images: the running statistics are that batch's (up to the n/(n-1)
    # of the unbiased variance), so eval mode computes what training mode does on it.
    assert torch.allclose(in_eval, in_train, atol=0.05)


def test_recalibration_is_deterministic_and_skips_too_few_images(sample):
    a, b = ConvVAE(8, 64), ConvVAE(8, 64)
    b.load_state_dict(a.state_dict())
    for model in (a, b):
        recalibrate_batchnorm(model, sample.train_x[:512], batch_size=128)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    before = {k: v.clone() for k, v in a.state_dict().items()}
    recalibrate_batchnorm(a, sample.train_x[:100], batch_size=128)  # not one full batch
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())


def test_recalibration_is_update_bns_plain_average_and_keeps_the_momentum(sample):
    torch.manual_seed(0)
    model = ConvVAE(8, 64)
    reference = ConvVAE(8, 64)
    reference.load_state_dict(model.state_dict())
    images = sample.train_x[:640]
    recalibrate_batchnorm(model, images, batch_size=128)
    # torch's own precise-BatchNorm routine over the same batches, noise and order.
    batches = [to_float(images[s : s + 128]) for s in range(0, 640, 128)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EVAL_SEED)
        update_bn(batches, reference)
    for (name, ours), theirs in zip(
        model.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name  # the same 1/k factors: bit for bit
    assert model.encoder[2].num_batches_tracked.item() == 5
    assert all(
        m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)
    )
