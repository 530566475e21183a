"""Sequence to sequence as a LightningModule: any net with `encode`, `init_state` and `step` (the RNN
encoder-decoder with or without attention, or the Transformer), trained with cross-entropy on the target
tokens (teacher forcing, or scheduled sampling when `teacher_forcing` < 1), and scored on what it writes
by itself: greedy decoding in validation, beam search at test when `beam_size` > 1.

Metrics: `loss` (teacher-forced cross-entropy per target token), `token_acc` (target positions, <eos>
included, where the decoded token is right), `seq_acc` (whole output right: the exact match).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torchmetrics import MeanMetric

from lab.contracts import ModelHooks, data_facts
from lab.data.seq2seq import BOS, EOS, PAD, Seq2SeqDataModule, collate
from lab.layout import RunLayout
from lab.loggers import save_and_log_figure
from lab.models.base import evaluating
from lab.models.optim import configure
from lab.models.seq2seq.decoding import beam_search, greedy

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def pad_to(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, T) -> (B, length), right-padded with <pad> (or cut)."""
    return F.pad(x, (0, length - x.shape[1]), value=PAD) if x.shape[1] < length else x[:, :length]


def compare(pred: torch.Tensor, tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pred (B, T') decoded, tgt (B, T) -> correct target tokens (N,) bool over the real target positions,
    and whole-sequence correctness (B,) bool (the output up to <eos> equals the target)."""
    t = max(pred.shape[1], tgt.shape[1])
    pred, tgt = pad_to(pred, t), pad_to(tgt, t)
    valid = tgt != PAD
    return (pred == tgt)[valid], (pred == tgt).all(1)


class Seq2Seq(ModelHooks, LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        vocab: list[str] | None = None,
        max_output_len: int | None = None,
        teacher_forcing: float = 1.0,
        beam_size: int = 1,
        label_smoothing: float = 0.0,
        attention_examples: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        if not vocab:
            raise ValueError("model.vocab is empty: it comes from the data (a DataModule with a `vocab` list of "
                             "tokens, <pad> <bos> <eos> first), or set model.vocab.")
        if not isinstance(max_output_len, int) or max_output_len < 1:
            raise ValueError(f"model.max_output_len={max_output_len!r} must be an integer >= 1 (the longest output "
                             "decoding may write, <eos> included; it comes from the data when left null).")
        if isinstance(teacher_forcing, bool) or not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"model.teacher_forcing={teacher_forcing!r} must be in [0, 1] (the share of decoder "
                             "inputs in training that are the true previous token rather than the model's own).")
        if teacher_forcing < 1.0 and not net.scheduled_sampling:
            raise ValueError(f"model.teacher_forcing={teacher_forcing} needs a net that decodes step by step in "
                             f"training; {type(net).__name__} trains in one teacher-forced pass: set "
                             "model.teacher_forcing=1.0.")
        if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
            raise ValueError(f"model.beam_size={beam_size!r} must be an integer >= 1 (1: greedy decoding).")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing={label_smoothing!r} must be in [0, 1).")
        self.net, self.optimizer_factory, self.scheduler_factory = net, optimizer, scheduler
        self.vocab, self.max_output_len = list(vocab), max_output_len
        self.teacher_forcing, self.beam_size, self.label_smoothing = teacher_forcing, beam_size, label_smoothing
        self.attention_examples = attention_examples
        for split in ("val", "test"):
            for name in ("loss", "token_acc", "seq_acc"):
                setattr(self, f"{split}_{name}", MeanMetric())
        self.bucket_acc = nn.ModuleDict()  # test seq_acc per source-length bucket (data.length_buckets)

    def check_data(self, datamodule: LightningDataModule) -> None:
        """Called by lab.run before training: the data's vocabulary must be the model's."""
        vocab = list(data_facts(datamodule).vocab)
        if vocab and vocab != self.vocab:
            raise ValueError(f"the data's vocabulary ({len(vocab)} tokens) is not model.vocab ({len(self.vocab)} "
                             "tokens); leave model.vocab null so it comes from the data.")

    def decode_text(self, tokens: torch.Tensor) -> str:
        out = []
        for t in tokens.tolist():
            if t == EOS:
                break
            if t != PAD:
                out.append(self.vocab[t])
        return "".join(out)

    # ---- training ----------------------------------------------------------------------------------------
    def forward(self, src: torch.Tensor, src_len: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Teacher-forced (or scheduled-sampling) logits (B, T, V) for the target tgt (B, T)."""
        return self.target_logits(self.net.encode(src, src_len), tgt)

    def target_logits(self, memory: dict[str, torch.Tensor], tgt: torch.Tensor) -> torch.Tensor:
        """`forward` on an encoded source (so evaluation encodes each batch once, for loss and decoding)."""
        tgt_in = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], 1)  # (B, T): <bos> y_1 .. y_{T-1}
        if not self.net.scheduled_sampling:
            return self.net.teacher_forced(memory, tgt_in)
        ratio = self.teacher_forcing if self.training else 1.0
        state, token, logits = self.net.init_state(memory), tgt_in[:, 0], []
        for t in range(tgt.shape[1]):
            step_logits, state, _ = self.net.step(memory, state, token)
            logits.append(step_logits)
            if t + 1 < tgt.shape[1]:
                token = tgt_in[:, t + 1]
                if ratio < 1.0:  # scheduled sampling: per example, the model's own previous token
                    own = torch.rand(token.shape[0], device=token.device) >= ratio
                    token = torch.where(own, step_logits.argmax(-1), token)
        return torch.stack(logits, 1)

    def loss(self, logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.transpose(1, 2), tgt, ignore_index=PAD, label_smoothing=self.label_smoothing)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        src, src_len, tgt = batch
        loss = self.loss(self(src, src_len, tgt), tgt)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=src.shape[0])
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        return configure(self, self.optimizer_factory, self.scheduler_factory)

    # ---- evaluation --------------------------------------------------------------------------------------
    def decode(self, src: torch.Tensor, src_len: torch.Tensor, beam_size: int = 1,
               memory: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """What the model writes for src (B, S): tokens (B, T) ending in <eos>, then <pad>."""
        memory = self.net.encode(src, src_len) if memory is None else memory
        if beam_size > 1:
            return beam_search(self.net, memory, self.max_output_len, beam_size)
        return greedy(self.net, memory, self.max_output_len)[0]

    def _evaluate(self, split: str, batch: Batch, beam_size: int) -> torch.Tensor:
        src, src_len, tgt = batch
        memory = self.net.encode(src, src_len)
        getattr(self, f"{split}_loss").update(self.loss(self.target_logits(memory, tgt), tgt), weight=src.shape[0])
        tokens, seqs = compare(self.decode(src, src_len, beam_size, memory), tgt)
        getattr(self, f"{split}_token_acc").update(tokens.float())
        getattr(self, f"{split}_seq_acc").update(seqs.float())
        for name in ("loss", "token_acc", "seq_acc"):
            self.log(f"{split}/{name}", getattr(self, f"{split}_{name}"), prog_bar=split == "val")
        return seqs

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate("val", batch, 1)

    def on_test_epoch_start(self) -> None:
        data = self.trainer.datamodule
        buckets = (data.length_buckets or []) if isinstance(data, Seq2SeqDataModule) else []
        self.bucket_acc = nn.ModuleDict({f"{lo}-{hi}": MeanMetric() for lo, hi in buckets}).to(self.device)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        seqs = self._evaluate("test", batch, self.beam_size)
        src_len = batch[1].to(seqs.device)
        for name, metric in self.bucket_acc.items():
            lo, hi = map(int, name.split("-"))
            inside = (src_len >= lo) & (src_len <= hi)
            if bool(inside.any()):
                metric.update(seqs[inside].float())
            self.log(f"test/seq_acc_len{name}", metric)

    # ---- attention heat maps -----------------------------------------------------------------------------
    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self.trainer.is_global_zero or self.attention_examples < 1:
            return
        data = self.trainer.datamodule
        dataset = data.val_set if isinstance(data, Seq2SeqDataModule) else None
        if dataset is None:
            return
        examples = [dataset[i] for i in range(min(self.attention_examples, len(dataset)))]
        src, src_len, _ = (t.to(self.device) for t in collate(examples))
        with evaluating(self):
            tokens, weights = greedy(self.net, self.net.encode(src, src_len), self.max_output_len, need_weights=True)
        if weights is None:  # attention=none: nothing to draw
            return
        path = RunLayout(Path(self.trainer.default_root_dir)).media / f"attention_epoch{self.current_epoch:03d}.png"
        save_and_log_figure(self.loggers, "val/attention", self.attention_figure(src, src_len, tokens, weights), path,
                            self.global_step)

    def attention_figure(self, src: torch.Tensor, src_len: torch.Tensor, tokens: torch.Tensor, weights: torch.Tensor):
        """One heat map per example: output tokens (rows) against source tokens (columns)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = src.shape[0]
        fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
        for i, ax in enumerate(axes[0]):
            s = int(src_len[i])
            out = [self.vocab[t] for t in tokens[i].tolist()]
            t = out.index("<eos>") + 1 if "<eos>" in out else len(out)
            ax.imshow(weights[i, :t, :s].float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(s), [self.vocab[c].replace(" ", "␣") for c in src[i, :s].tolist()], fontsize=7)
            ax.set_yticks(range(t), [o.replace("<eos>", "</s>") for o in out[:t]], fontsize=7)
            ax.set_xlabel("source")
            if i == 0:
                ax.set_ylabel("output")
        fig.suptitle(f"attention, epoch {self.current_epoch}")
        fig.tight_layout()
        return fig
