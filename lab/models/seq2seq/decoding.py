"""Greedy and beam-search decoding for any net with `init_state(memory)` and
`step(memory, state, token, need_weights) -> (logits, state, weights)`, whose memory and state tensors
all have the batch first."""

from __future__ import annotations

import torch
from torch import nn

from lab.data.seq2seq import BOS, EOS, PAD

State = dict[str, torch.Tensor]


def reorder(state: State, rows: torch.Tensor) -> State:
    """Pick batch rows (for beams: repeat or reorder them) of every tensor in `state`."""
    return {k: v.index_select(0, rows) for k, v in state.items()}


@torch.no_grad()
def greedy(net: nn.Module, memory: State, max_len: int, need_weights: bool = False
           ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The most likely token at each step: tokens (B, T) ending in <eos> (then <pad>), and the attention
    weights of each step (B, T, S) when `need_weights` and the net has attention."""
    b = memory["mask"].shape[0]
    state = net.init_state(memory)
    token = torch.full((b,), BOS, dtype=torch.long, device=memory["mask"].device)
    done = torch.zeros(b, dtype=torch.bool, device=token.device)
    tokens, weights = [], []
    for _ in range(max_len):
        logits, state, w = net.step(memory, state, token, need_weights)
        token = logits.argmax(-1).masked_fill(done, PAD)  # (B,)
        tokens.append(token)
        if w is not None and need_weights:
            weights.append(w)
        done |= token == EOS
        if bool(done.all()):
            break
    return torch.stack(tokens, 1), (torch.stack(weights, 1) if weights else None)


@torch.no_grad()
def beam_search(net: nn.Module, memory: State, max_len: int, beam_size: int) -> torch.Tensor:
    """The highest-scoring (sum of log-probabilities) of `beam_size` hypotheses kept at each step: (B, T).
    A finished hypothesis (it wrote <eos>) keeps its score and grows only <pad>. beam_size 1 is greedy."""
    b, k = memory["mask"].shape[0], beam_size
    device = memory["mask"].device
    memory = reorder(memory, torch.arange(b, device=device).repeat_interleave(k))  # (B*K, ...)
    state = net.init_state(memory)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # the K beams start identical: expand only the first
    token = torch.full((b * k,), BOS, dtype=torch.long, device=device)
    tokens = torch.empty(b * k, 0, dtype=torch.long, device=device)
    finished = torch.zeros(b * k, dtype=torch.bool, device=device)
    for _ in range(max_len):
        logits, state, _ = net.step(memory, state, token)
        logp = logits.float().log_softmax(-1)  # (B*K, V)
        v = logp.shape[-1]
        only_pad = torch.full_like(logp, float("-inf"))
        only_pad[:, PAD] = 0.0
        logp = torch.where(finished.unsqueeze(1), only_pad, logp)
        top, flat = (scores.view(-1, 1) + logp).view(b, k * v).topk(k, -1)  # (B, K) best continuations
        rows = (torch.arange(b, device=device).unsqueeze(1) * k + flat // v).view(-1)  # their parent beams
        token = (flat % v).view(-1)
        state, tokens = reorder(state, rows), torch.cat([tokens.index_select(0, rows), token.unsqueeze(1)], 1)
        finished = finished.index_select(0, rows) | (token == EOS)
        scores = top
        if bool(finished.all()):
            break
    best = scores.argmax(-1)  # (B,)
    return tokens.view(b, k, -1)[torch.arange(b, device=device), best]
