"""HMM maths against brute-force enumeration, and parameters recovered from samples of a known HMM."""

import itertools
import math
from functools import partial

import pytest
import torch

from generative.hmm import HMM
from generative.hmm.emissions import BernoulliEmission, CategoricalEmission, GaussianEmission
from generative.hmm.maths import forward_log_likelihood, sample_states, viterbi


def random_hmm(k=3, v=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_pi = torch.randn(k, generator=g).log_softmax(-1)
    log_A = torch.randn(k, k, generator=g).log_softmax(-1)
    log_B = torch.randn(k, v, generator=g).log_softmax(-1)
    return log_pi, log_A, log_B


def brute_force(log_pi, log_A, log_B, x):
    """Every state path of x: (log p(x), best path, its log p(x, path))."""
    k, total, best, best_lp = log_pi.shape[0], [], None, -math.inf
    for path in itertools.product(range(k), repeat=len(x)):
        lp = log_pi[path[0]] + log_B[path[0], x[0]]
        for t in range(1, len(x)):
            lp = lp + log_A[path[t - 1], path[t]] + log_B[path[t], x[t]]
        total.append(lp)
        if lp > best_lp:
            best, best_lp = list(path), float(lp)
    return float(torch.logsumexp(torch.stack(total), 0)), best, best_lp


def test_forward_algorithm_and_viterbi_equal_brute_force():
    log_pi, log_A, log_B = random_hmm()
    xs = torch.tensor([[0, 3, 1, 1, 2], [2, 2, 0, 3, 1]])
    log_b = log_B[:, xs].permute(1, 2, 0)  # (N, T, K)
    ll = forward_log_likelihood(log_pi, log_A, log_b)
    paths, scores = viterbi(log_pi, log_A, log_b)
    for i, x in enumerate(xs.tolist()):
        total, best, best_lp = brute_force(log_pi, log_A, log_B, x)
        assert float(ll[i]) == pytest.approx(total, abs=1e-5)
        assert paths[i].tolist() == best and float(scores[i]) == pytest.approx(best_lp, abs=1e-5)


def test_likelihoods_of_all_sequences_of_a_length_sum_to_one():
    log_pi, log_A, log_B = random_hmm(k=2, v=3, seed=1)
    xs = torch.tensor(list(itertools.product(range(3), repeat=4)))
    ll = forward_log_likelihood(log_pi, log_A, log_B[:, xs].permute(1, 2, 0))
    assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-5)


def test_gaussian_emissions_equal_torch_distributions():
    em = GaussianEmission(2, 3, 5)
    with torch.no_grad():
        em.mean.normal_()
        em.raw_std.normal_()
    x = torch.randn(4, 6, 5)
    expected = torch.distributions.Normal(em.mean[None, :, None], em.std()[None, :, None]).log_prob(
        x[:, None, :, None]).sum(-1)  # (B, M, T, K)
    assert torch.allclose(em.log_prob(x), expected, atol=1e-4)


def test_bernoulli_emissions_equal_torch_distributions_on_bits():
    em = BernoulliEmission(2, 3, 5)
    with torch.no_grad():
        em.logits.normal_()
    x = torch.randint(0, 2, (4, 6, 5)).float()
    expected = torch.distributions.Bernoulli(logits=em.logits[None, :, None]).log_prob(x[:, None, :, None]).sum(-1)
    assert torch.allclose(em.log_prob(x), expected, atol=1e-4)


def test_categorical_emissions_reject_symbols_out_of_range():
    with pytest.raises(ValueError, match=r"integer symbols in \[0, 3\)"):
        CategoricalEmission(1, 2, 3).log_prob(torch.tensor([[0, 3]]))


def best_permutation_error(true, learned):
    """max abs error of the learned (pi, A, B) against the true ones under the best state relabelling."""
    k = true[0].shape[0]
    errors = []
    for perm in itertools.permutations(range(k)):
        p = list(perm)
        errors.append(max(float((true[0] - learned[0][p]).abs().max()),
                          float((true[1] - learned[1][p][:, p]).abs().max()),
                          float((true[2] - learned[2][p]).abs().max())))
    return min(errors)


def test_gradient_ascent_recovers_a_known_hmm_from_its_samples():
    torch.manual_seed(0)
    pi = torch.tensor([0.8, 0.2])
    A = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    B = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    g = torch.Generator().manual_seed(1)
    states = sample_states(pi.log(), A.log(), 1000, 30, generator=g)
    x = torch.multinomial(B[states].flatten(0, 1), 1, generator=g).view(states.shape)  # (N, T)
    hmm = HMM(partial(torch.optim.Adam, lr=0.1), num_states=2, emission="categorical", num_symbols=3,
              per_class=False, init_from_data=False)
    opt = hmm.configure_optimizers()["optimizer"]
    for _ in range(200):
        loss = -hmm.log_likelihoods(x)[:, 0].mean() / x.shape[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = (hmm.log_pi()[0].exp(), hmm.log_A()[0].exp(), hmm.emission.probs()[0])
    assert best_permutation_error((pi, A, B), learned) < 0.05
    # the fit is as likely as the true model on its own samples (per step, nats)
    true_ll = forward_log_likelihood(pi.log(), A.log(), B.log()[:, x].permute(1, 2, 0)).mean() / 30
    assert float(hmm.log_likelihoods(x)[:, 0].mean() / 30) == pytest.approx(float(true_ll), abs=0.01)


def test_samples_follow_the_model_and_viterbi_decodes_them():
    """With nearly deterministic emissions Viterbi recovers the sampled states."""
    hmm = HMM(partial(torch.optim.Adam), num_states=3, emission="gaussian", input_size=2, num_classes=2,
              per_class=True, min_std=0.01, init_from_data=False, seq_len=12)
    with torch.no_grad():
        hmm.emission.mean.copy_(torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]).expand(2, 3, 2))
        hmm.emission.raw_std.fill_(-10.0)  # std ~ min_std
    x = hmm.sample(50, model=1, seed=0)
    assert x.shape == (50, 12, 2)
    paths, _ = hmm.viterbi(x, model=1)
    nearest = torch.cdist(x, hmm.emission.mean[1]).argmin(-1)
    assert torch.equal(paths, nearest)


def test_a_left_to_right_hmm_starts_in_state_0_and_never_goes_back():
    hmm = HMM(partial(torch.optim.Adam, lr=0.1), num_states=4, emission="gaussian", input_size=3, per_class=False,
              topology="left_to_right", init_from_data=False, seq_len=20)
    opt = hmm.configure_optimizers()["optimizer"]
    x = torch.randn(16, 20, 3)
    for _ in range(5):  # training keeps the forbidden transitions at probability 0 (and no NaN on the way)
        loss = -hmm.log_likelihoods(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    A = hmm.log_A()[0].exp()
    assert torch.equal(A.tril(-1), torch.zeros(4, 4)) and torch.equal(A.triu(2), torch.zeros(4, 4))
    assert torch.allclose(A.sum(-1), torch.ones(4)) and float(A[3, 3]) == 1.0
    assert hmm.log_pi()[0].exp().tolist() == [1.0, 0.0, 0.0, 0.0]
    paths, _ = hmm.viterbi(x)
    assert (paths[:, 0] == 0).all() and (paths.diff(dim=1) >= 0).all() and (paths.diff(dim=1) <= 1).all()
    assert torch.isfinite(hmm.log_likelihoods(x)).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"topology": "bakis"}, "model.topology='bakis' is not valid; valid choices: ergodic, left_to_right"),
    ({"num_states": 0}, "model.num_states=0 is not valid: it must be an integer >= 1"),
    ({"emission": "poisson"}, "model.emission='poisson' is not valid; valid choices: gaussian, bernoulli, categorical"),
    ({"num_classes": None}, "model.per_class=true needs model.num_classes"),
])
def test_bad_keys_are_one_paragraph_errors(kwargs, match):
    base = {"num_states": 4, "emission": "gaussian", "input_size": 28, "num_classes": 10}
    with pytest.raises(ValueError, match=match):
        HMM(partial(torch.optim.Adam), **{**base, **kwargs})
