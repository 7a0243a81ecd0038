import math

import torch

from vae_core import ConvVAE, iwae_nll, negative_elbo


def test_negative_elbo_matches_a_hand_computation():
    # Two images of 4 pixels are enough to check the sums and the per-image averaging.
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -0.5, -2.0]])
    x = torch.tensor([[1.0, 0.0, 1.0, 0.2], [0.0, 1.0, 0.5, 0.0]])
    mu = torch.tensor([[0.3, -0.2], [1.0, 0.0]])
    logvar = torch.tensor([[0.1, -0.4], [0.0, 0.5]])

    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    recon = [
        sum(bce(a, t) for a, t in zip(row, xs, strict=True))
        for row, xs in zip(logits.tolist(), x.tolist(), strict=True)
    ]
    kl = [
        -0.5 * sum(1 + lv - m * m - math.exp(lv) for m, lv in zip(ms, lvs, strict=True))
        for ms, lvs in zip(mu.tolist(), logvar.tolist(), strict=True)
    ]
    terms = negative_elbo(logits, x, mu, logvar)
    assert math.isclose(terms.recon.item(), sum(recon) / 2, rel_tol=1e-5)
    assert math.isclose(terms.kl.item(), sum(kl) / 2, rel_tol=1e-5)
    assert math.isclose(terms.total.item(), (sum(recon) + sum(kl)) / 2, rel_tol=1e-5)
    per_image = negative_elbo(logits, x, mu, logvar, reduction="none")
    assert per_image.total.shape == (2,)
    assert math.isclose(per_image.total[1].item(), recon[1] + kl[1], rel_tol=1e-5)


def test_kl_is_zero_for_the_prior():
    z = torch.zeros(3, 7)
    terms = negative_elbo(torch.zeros(3, 1, 28, 28), torch.rand(3, 1, 28, 28), z, z)
    assert terms.kl.item() == 0.0
    # With logits 0 every pixel costs log 2 nats, whatever the target.
    assert math.isclose(terms.recon.item(), 784 * math.log(2), rel_tol=1e-6)


def test_iwae_bound_is_tighter_than_the_elbo(sample):
    torch.manual_seed(0)
    model = ConvVAE(4, 64).eval()
    x = sample.test_x[:8].float() / 255
    g = torch.Generator().manual_seed(0)
    draws = []
    with torch.no_grad():
        for _ in range(100):  # a Monte Carlo estimate of each image's negative ELBO
            logits, mu, logvar = model(x, generator=g)
            draws.append(negative_elbo(logits, x, mu, logvar, reduction="none").total)
    elbo = torch.stack(draws).mean(0)
    nll = iwae_nll(model, x, k=100, chunk=50, generator=g)
    assert nll.shape == (8,)
    assert torch.isfinite(nll).all()
    assert (nll <= elbo + 0.5).all()
    assert nll.mean() < elbo.mean()
