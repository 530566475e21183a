"""Hidden Markov model recursions in log space, batched over any leading dimensions (...):
log_pi (..., K) initial, log_A (..., K, K) transitions (row: from, column: to), log_b (..., T, K)
emission log-probabilities of each observation under each state."""

from __future__ import annotations

import torch

# log 0 as a finite number: a state unreachable at some step (left-to-right models) would otherwise give
# logsumexp(all -inf) = -inf, whose gradient is NaN
LOG_ZERO = -1e30


def forward_log_likelihood(log_pi: torch.Tensor, log_A: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """The forward algorithm: log p(x_1..T) = logsumexp_k alpha_T(k), with
    alpha_1 = log_pi + log_b_1 and alpha_t(j) = logsumexp_i (alpha_{t-1}(i) + log_A(i, j)) + log_b_t(j). -> (...)."""
    log_pi, log_A = log_pi.clamp_min(LOG_ZERO), log_A.clamp_min(LOG_ZERO)
    alpha = log_pi + log_b[..., 0, :]  # (..., K)
    for t in range(1, log_b.shape[-2]):
        alpha = torch.logsumexp(alpha.unsqueeze(-1) + log_A, dim=-2) + log_b[..., t, :]
    return torch.logsumexp(alpha, dim=-1)


def viterbi(log_pi: torch.Tensor, log_A: torch.Tensor, log_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The most likely state path: (path (..., T) long, its joint log-probability log p(x, path) (...))."""
    log_pi, log_A = log_pi.clamp_min(LOG_ZERO), log_A.clamp_min(LOG_ZERO)
    delta = log_pi + log_b[..., 0, :]  # (..., K)
    back = []
    for t in range(1, log_b.shape[-2]):
        scores = delta.unsqueeze(-1) + log_A  # (..., K_from, K_to)
        delta, arg = scores.max(dim=-2)
        delta = delta + log_b[..., t, :]
        back.append(arg)  # (..., K): best predecessor of each state
    best, state = delta.max(dim=-1)
    path = [state]
    for arg in reversed(back):
        state = arg.gather(-1, state.unsqueeze(-1)).squeeze(-1)
        path.append(state)
    return torch.stack(path[::-1], dim=-1), best


def sample_states(log_pi: torch.Tensor, log_A: torch.Tensor, n: int, length: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """n state paths of `length` from one HMM (log_pi (K,), log_A (K, K)) -> (n, length) long."""
    state = torch.multinomial(log_pi.exp().expand(n, -1), 1, generator=generator).squeeze(1)
    path = [state]
    for _ in range(length - 1):
        state = torch.multinomial(log_A.exp()[state], 1, generator=generator).squeeze(1)
        path.append(state)
    return torch.stack(path, 1)
