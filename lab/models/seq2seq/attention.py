"""Attention scores for RNN encoder-decoders: additive (Bahdanau et al., 2015), dot and general (Luong et
al., 2015). `prepare` projects the encoder outputs once per sequence; each decoder step then scores its
query against them and pools the values (attention pooling) into a context vector."""

from __future__ import annotations

import torch
from torch import nn

from lab.checks import check_choice

SCORES = ("additive", "dot", "general")


class Attention(nn.Module):
    """score(q, k): additive v^T tanh(W_q q + W_k k); dot q . k; general q^T W k. Keys and values are the
    encoder outputs (B, S, D); query is the decoder state (B, D); padded positions get no weight."""

    def __init__(self, score: str, dim: int) -> None:
        super().__init__()
        check_choice("model.net.attention", score, SCORES)
        self.score = score
        if score == "additive":
            self.w_q, self.w_k = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim)
            self.v = nn.Linear(dim, 1, bias=False)
        elif score == "general":
            self.w = nn.Linear(dim, dim, bias=False)

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        """(B, S, D) encoder outputs -> what `forward` compares queries with (B, S, D)."""
        if self.score == "additive":
            return self.w_k(keys)
        if self.score == "general":
            return self.w(keys)  # q^T W k = q . (W k)
        return keys

    def forward(self, query: torch.Tensor, prepared: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, D), prepared keys (B, S, D), values (B, S, D), mask (B, S) True at real tokens ->
        context (B, D), weights (B, S) summing to 1 over the real tokens."""
        if self.score == "additive":
            scores = self.v(torch.tanh(prepared + self.w_q(query).unsqueeze(1))).squeeze(-1)  # (B, S)
        else:
            scores = torch.bmm(prepared, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)  # (B, S)
        return torch.bmm(weights.unsqueeze(1), values).squeeze(1), weights  # (B, D), (B, S)
