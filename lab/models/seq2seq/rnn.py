"""The RNN encoder-decoder (Sutskever et al., 2014; Cho et al., 2014) with optional attention.

Encoder: embedding -> GRU/LSTM (optionally bidirectional) over the packed source; its final state,
through a tanh bridge, starts the decoder. Decoder step (Luong et al., 2015, with input feeding):
    h_t = RNN([embed(y_{t-1}); feed_{t-1}], h_{t-1})
    attention=none:  logits = W_o h_t                               (the source reaches it only through h_0)
    otherwise:       c_t, a_t = attend(h_t, encoder outputs)
                     feed_t = tanh(W_c [h_t; c_t]);  logits = W_o feed_t
Every tensor in `memory` and `state` has the batch first, so beam search can reorder them alike.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lab.checks import check_choice, check_ints
from lab.models.seq2seq.attention import SCORES, Attention

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}
STEP_CELLS = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}  # the decoder runs one step at a time: cells cost less
State = dict[str, torch.Tensor]


class RNNSeq2Seq(nn.Module):
    scheduled_sampling = True  # decodes step by step in training too, so teacher_forcing < 1 applies

    def __init__(self, vocab_size: int, cell: str = "gru", embed_dim: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, bidirectional: bool = True, attention: str = "additive",
                 dropout: float = 0.0) -> None:
        super().__init__()
        check_choice("model.net.cell", cell, tuple(CELLS))
        check_choice("model.net.attention", attention, ("none", *SCORES))
        check_ints("model.net.", vocab_size=(vocab_size, 4), embed_dim=(embed_dim, 1), hidden_size=(hidden_size, 1),
                   num_layers=(num_layers, 1))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.net.dropout={dropout!r} must be in [0, 1).")
        self.cell, self.attention_kind, self.num_layers = cell, attention, num_layers
        self.hidden_size, self.directions = hidden_size, 2 if bidirectional else 1
        rnn = CELLS[cell]
        drop = dropout if num_layers > 1 else 0.0
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = rnn(embed_dim, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional,
                           dropout=drop)
        self.bridge = nn.Linear(self.directions * hidden_size, hidden_size)  # final encoder state -> h_0
        self.attention = None if attention == "none" else Attention(attention, hidden_size)
        self.values = nn.Linear(self.directions * hidden_size, hidden_size) if self.attention else None
        feed = hidden_size if self.attention else 0
        cell_cls = STEP_CELLS[cell]
        self.decoder = nn.ModuleList([cell_cls(embed_dim + feed if i == 0 else hidden_size, hidden_size)
                                      for i in range(num_layers)])
        self.combine = nn.Linear(2 * hidden_size, hidden_size) if self.attention else None
        self.dropout = nn.Dropout(dropout)
        self.layer_dropout = nn.Dropout(drop)
        self.out = nn.Linear(hidden_size, vocab_size)

    def _bridge(self, final: torch.Tensor) -> torch.Tensor:
        """(L * directions, B, H) final encoder states -> (B, L, H) initial decoder states."""
        b = final.shape[1]
        final = final.view(self.num_layers, self.directions, b, self.hidden_size).permute(2, 0, 1, 3)
        return torch.tanh(self.bridge(final.reshape(b, self.num_layers, -1)))  # (B, L, H)

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> State:
        """src (B, S), src_len (B,) -> memory: keys/values (B, S, H), mask (B, S), h0 (and c0) (B, L, H)."""
        packed = pack_padded_sequence(self.dropout(self.embed(src)), src_len.cpu(), batch_first=True,
                                      enforce_sorted=False)
        outputs, final = self.encoder(packed)
        memory: State = {"mask": src != 0}
        h, c = final if self.cell == "lstm" else (final, None)
        memory["h0"] = self._bridge(h)
        if c is not None:
            memory["c0"] = self._bridge(c)
        if self.attention is not None:
            outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])  # (B, S, dH)
            memory["values"] = self.values(outputs)  # (B, S, H)
            memory["keys"] = self.attention.prepare(memory["values"])
        return memory

    def init_state(self, memory: State) -> State:
        state = {"h": memory["h0"]}
        if self.cell == "lstm":
            state["c"] = memory["c0"]
        if self.attention is not None:
            state["feed"] = memory["h0"].new_zeros(memory["h0"].shape[0], self.hidden_size)
        return state

    def step(self, memory: State, state: State, token: torch.Tensor, need_weights: bool = False
             ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """token (B,) -> logits (B, V), the next state, attention weights (B, S) (None without attention;
        computed anyway, so `need_weights` changes nothing here)."""
        x = self.dropout(self.embed(token))  # (B, E)
        if self.attention is not None:
            x = torch.cat([x, state["feed"]], -1)  # input feeding: (B, E + H)
        hs, cs = [], []
        for layer, cell in enumerate(self.decoder):  # (B, H) per layer, dropout between layers
            if self.cell == "lstm":
                h, c = cell(x, (state["h"][:, layer], state["c"][:, layer]))
                cs.append(c)
            else:
                h = cell(x, state["h"][:, layer])
            hs.append(h)
            x = self.layer_dropout(h) if layer + 1 < self.num_layers else h
        h_top = hs[-1]
        new: State = {"h": torch.stack(hs, 1)}  # (B, L, H)
        if self.cell == "lstm":
            new["c"] = torch.stack(cs, 1)
        if self.attention is None:
            return self.out(self.dropout(h_top)), new, None
        context, weights = self.attention(h_top, memory["keys"], memory["values"], memory["mask"])  # (B, H), (B, S)
        new["feed"] = torch.tanh(self.combine(torch.cat([h_top, context], -1)))  # (B, H)
        return self.out(self.dropout(new["feed"])), new, weights
