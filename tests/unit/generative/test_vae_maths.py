import math

import pytest
import torch

from generative.vae.losses import iwae_log_likelihood, kl_standard_normal, log_likelihood, log_normal
from generative.vae.nets import MLPDecoder, MLPEncoder


def test_kl_closed_form_matches_hand_computation():
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    # 0.5 * sum(mu^2 + var - 1 - log var) = 0.5 * [(1 + 1 - 1 - 0) + (4 + 4 - 1 - log 4)]
    expected = 0.5 * (1.0 + (7.0 - math.log(4.0)))
    assert kl_standard_normal(mu, logvar).item() == pytest.approx(expected, rel=1e-6)


def test_kl_closed_form_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4) * 0.5
    z = mu + torch.randn(200_000, 3, 4) * (0.5 * logvar).exp()
    mc = (log_normal(z, mu, logvar) - log_normal(z, torch.zeros_like(z), torch.zeros_like(z))).mean(0)
    torch.testing.assert_close(mc, kl_standard_normal(mu, logvar), atol=0.02, rtol=0.01)


def test_bernoulli_log_likelihood_hand_case():
    x = torch.tensor([1.0, 0.0, 0.5]).view(1, 1, 1, 3)
    logits = torch.tensor([0.0, math.log(3.0), 0.0]).view(1, 1, 1, 3)
    # p = 0.5, 0.75, 0.5 ; log p(x) = log .5 + log(1 - .75) + (.5 log .5 + .5 log .5)
    expected = math.log(0.5) + math.log(0.25) + math.log(0.5)
    assert log_likelihood(x, logits, "bernoulli").item() == pytest.approx(expected, rel=1e-6)


def test_gaussian_log_likelihood_hand_case():
    x, mean = torch.zeros(1, 1, 1, 2), torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    log_scale = torch.tensor(math.log(2.0))
    expected = sum(-0.5 * math.log(2 * math.pi) - math.log(2.0) - 0.5 * (d / 2.0) ** 2 for d in (0.0, 1.0))
    assert log_likelihood(x, mean, "gaussian", log_scale).item() == pytest.approx(expected, rel=1e-6)


def test_elbo_of_a_tiny_model_equals_hand_computed_terms():
    """With a deterministic 'posterior' check: ELBO = E_q[log p(x|z)] - KL, reconstructed by hand."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((2, 1, 2, 2), 0.5))
    mu, logvar = torch.tensor([[0.3], [-0.2]]), torch.full((2, 1), -30.0)  # q is nearly a point mass at mu
    w = torch.tensor([[0.5], [-1.0], [2.0], [0.0]])

    def log_px(xr, z):
        return log_likelihood(xr, (z @ w.T).view(-1, 1, 2, 2), "bernoulli")

    elbo = log_px(x, mu) - kl_standard_normal(mu, logvar)
    by_hand = []
    for i in range(2):
        p = torch.sigmoid(mu[i] * w.squeeze(1))
        ll = (x[i].flatten() * p.log() + (1 - x[i].flatten()) * (1 - p).log()).sum()
        kl = 0.5 * (mu[i] ** 2 + math.exp(-30.0) - 1 + 30.0)
        by_hand.append(ll - kl)
    torch.testing.assert_close(elbo, torch.stack(by_hand).squeeze(-1))


def _linear_gaussian_log_px(xr, z):
    """p(z) = N(0, 1), p(x | z) = N(x; z, 1), so p(x) = N(x; 0, 2) and p(z | x) = N(x / 2, 1 / 2)."""
    return log_likelihood(xr, z.view(-1, 1, 1, 1), "gaussian", torch.tensor(0.0))


def test_iwae_with_the_exact_posterior_is_exactly_log_px():
    x = torch.tensor([0.0, 1.5, -3.0]).view(3, 1, 1, 1)
    mu, logvar = x.view(3, 1) / 2, torch.full((3, 1), math.log(0.5))
    exact = -0.5 * (math.log(2 * math.pi * 2.0) + x.view(3) ** 2 / 2.0)
    for k in (1, 7, 100):
        torch.testing.assert_close(iwae_log_likelihood(x, mu, logvar, _linear_gaussian_log_px, k=k, chunk=9), exact)


def test_iwae_with_a_poor_posterior_approaches_log_px_from_below():
    torch.manual_seed(0)
    x = torch.tensor([1.5]).view(1, 1, 1, 1)
    mu, logvar = torch.tensor([[0.0]]), torch.tensor([[0.0]])  # q = N(0, 1), not the posterior
    exact = -0.5 * (math.log(4 * math.pi) + 1.5**2 / 2)
    # ELBO = E_q log N(x; z, 1) - KL(N(0, 1) || N(0, 1)) = -(log 2 pi + x^2 + 1) / 2 - 0
    elbo = -0.5 * (math.log(2 * math.pi) + 1.5**2 + 1.0)
    # average many draws of each bound so the comparison is about their expectations
    mean_bound = {k: torch.stack([iwae_log_likelihood(x, mu, logvar, _linear_gaussian_log_px, k=k)
                                  for _ in range(400 if k < 1000 else 4)]).mean().item() for k in (1, 10, 100, 20_000)}
    assert mean_bound[1] == pytest.approx(elbo, abs=0.05)
    assert elbo < mean_bound[10] < mean_bound[100] < exact
    assert mean_bound[20_000] == pytest.approx(exact, abs=0.01)


def test_iwae_bound_is_above_the_elbo_and_tightens_with_k():
    torch.manual_seed(0)
    enc, dec = MLPEncoder(latent_dim=4, hidden_sizes=(16,)), MLPDecoder(latent_dim=4, hidden_sizes=(16,))
    x = torch.bernoulli(torch.rand(8, 1, 28, 28))
    mu, logvar = enc(x)

    def log_px(xr, z):
        return log_likelihood(xr, dec(z), "bernoulli")

    with torch.no_grad():
        elbo = torch.stack([log_px(x, mu + torch.randn_like(mu) * (0.5 * logvar).exp()) for _ in range(400)]).mean(0)
        elbo = elbo - kl_standard_normal(mu, logvar)
        bounds = {k: iwae_log_likelihood(x, mu, logvar, log_px, k=k, chunk=64).mean().item() for k in (1, 10, 100, 1000)}
    assert bounds[1] == pytest.approx(elbo.mean().item(), abs=3.0)  # k = 1 is an ELBO estimate
    assert elbo.mean().item() < bounds[10] < bounds[100] < bounds[1000]
