"""The Transformer encoder-decoder (Vaswani et al., 2017) on torch.nn.Transformer: token embeddings
scaled by sqrt(d_model) plus learned or sinusoidal positions, a causal mask on the decoder, padding
masks on both sides. Decoding re-runs the decoder on the prefix written so far (targets here are short).
The cross-attention of the last decoder layer is what `step` returns for the heat maps."""

from __future__ import annotations

import math

import torch
from torch import nn

from lab.checks import check_choice, check_ints

State = dict[str, torch.Tensor]
POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """(length, dim): PE[p, 2i] = sin(p / 10000^(2i/dim)), PE[p, 2i+1] = cos(...)."""
    pos = torch.arange(length).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class TransformerSeq2Seq(nn.Module):
    scheduled_sampling = False  # trained in one teacher-forced pass (teacher_forcing must be 1)

    def __init__(self, vocab_size: int, d_model: int = 128, nhead: int = 4, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, dim_feedforward: int = 256, dropout: float = 0.1,
                 positions: str = "sinusoidal", max_len: int = 256) -> None:
        super().__init__()
        check_choice("model.net.positions", positions, POSITIONS)
        check_ints("model.net.", vocab_size=(vocab_size, 4), d_model=(d_model, 1), nhead=(nhead, 1),
                   num_encoder_layers=(num_encoder_layers, 1), num_decoder_layers=(num_decoder_layers, 1),
                   dim_feedforward=(dim_feedforward, 1), max_len=(max_len, 1))
        if d_model % nhead:
            raise ValueError(f"model.net.d_model={d_model} must be divisible by model.net.nhead={nhead}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.net.dropout={dropout!r} must be in [0, 1).")
        self.d_model, self.max_len, self.positions = d_model, max_len, positions
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
        # std d^-1/2, so that embed * sqrt(d) has unit scale, as the positions do (N(0, 1) would drown them)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        with torch.no_grad():
            self.embed.weight[0].zero_()
        if positions == "learned":
            self.pos = nn.Embedding(max_len, d_model)
        else:
            self.register_buffer("pos_table", sinusoidal_positions(max_len, d_model), persistent=False)
        self.transformer = nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                                          dropout, batch_first=True)
        self.transformer.encoder.use_nested_tensor = False  # padding masks stay masks (no prototype nested tensors)
        self.out = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(dropout)
        self._cross: list[tuple] | None = None  # the last layer's cross-attention inputs, while `step` asks
        self.transformer.decoder.layers[-1].multihead_attn.register_forward_pre_hook(self._keep_cross, with_kwargs=True)

    def _keep_cross(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._cross is not None:
            self._cross.append((args, kwargs))

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, d_model)."""
        t = tokens.shape[1]
        if t > self.max_len:
            raise ValueError(f"a sequence of {t} tokens is longer than model.net.max_len={self.max_len}.")
        pos = self.pos.weight[:t] if self.positions == "learned" else self.pos_table[:t]
        return self.dropout(self.embed(tokens) * math.sqrt(self.d_model) + pos)

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        mask = src != 0
        memory = self.transformer.encoder(self._embed(src), src_key_padding_mask=~mask)  # (B, S, d)
        return {"memory": memory, "mask": mask}

    def teacher_forced(self, memory: State, tgt_in: torch.Tensor) -> torch.Tensor:
        """tgt_in (B, T) starting with <bos> -> logits (B, T, V), every position in one pass."""
        t = tgt_in.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=tgt_in.device).triu(1)  # True: may not attend (future)
        h = self.transformer.decoder(self._embed(tgt_in), memory["memory"], tgt_mask=causal, tgt_is_causal=True,
                                     tgt_key_padding_mask=tgt_in == 0, memory_key_padding_mask=~memory["mask"])
        return self.out(h)

    def init_state(self, memory: State) -> State:
        return {"prefix": memory["mask"].new_zeros(memory["mask"].shape[0], 0, dtype=torch.long)}

    def step(self, memory: State, state: State, token: torch.Tensor, need_weights: bool = False
             ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """token (B,) -> logits (B, V), the longer prefix, and (need_weights) the last layer's cross-attention
        of this position (B, S), averaged over heads."""
        prefix = torch.cat([state["prefix"], token.unsqueeze(1)], 1)  # (B, t)
        self._cross = [] if need_weights else None
        logits = self.teacher_forced(memory, prefix)[:, -1]  # (B, V)
        if not need_weights:
            return logits, {"prefix": prefix}, None
        (query, key, value), kwargs = self._cross[-1]
        self._cross = None
        mha = self.transformer.decoder.layers[-1].multihead_attn
        _, weights = mha(query[:, -1:], key, value, key_padding_mask=kwargs.get("key_padding_mask"),
                         need_weights=True, average_attn_weights=True)  # (B, 1, S)
        return logits, {"prefix": prefix}, weights.squeeze(1)
