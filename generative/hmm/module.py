"""Hidden Markov models as a LightningModule, fitted by gradient ascent on the exact log-likelihood (the
forward algorithm in log space), with Viterbi decoding and sampling.

With `per_class` (and labelled data) the module holds one HMM per class, each fitted to its class's
sequences, and classifies by likelihood: argmax_c log p(x | c) (a generative classifier, uniform prior).
Metrics: `loglik` (log p(x | its class) per sequence, nats; a density for Gaussian emissions) and `acc`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from generative.hmm.emissions import BernoulliEmission, CategoricalEmission, GaussianEmission
from generative.hmm.maths import forward_log_likelihood, sample_states, viterbi
from generative.media import log_grid
from lab.checks import check_choice, check_ints
from lab.contracts import ModelHooks, data_facts
from lab.models.optim import configure

EMISSIONS = ("gaussian", "bernoulli", "categorical")
TOPOLOGIES = ("ergodic", "left_to_right")


def make_emission(emission: str, num_models: int, num_states: int, input_size: int | None, num_symbols: int | None,
                  min_std: float) -> nn.Module:
    """The emission distributions of `num_models` HMMs of `num_states` states each (model.emission), its sizes
    checked: input_size features (gaussian, bernoulli) or num_symbols symbols (categorical)."""
    if emission == "categorical":
        check_ints("model.", num_symbols=(num_symbols, 2))
        return CategoricalEmission(num_models, num_states, num_symbols)
    check_ints("model.", input_size=(input_size, 1))
    if emission == "bernoulli":
        return BernoulliEmission(num_models, num_states, input_size)
    if not min_std > 0:
        raise ValueError(f"model.min_std={min_std!r} must be > 0 (the smallest emission std).")
    return GaussianEmission(num_models, num_states, input_size, min_std)


class HMM(ModelHooks, LightningModule):
    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        num_states: int = 10,
        emission: str = "gaussian",
        topology: str = "ergodic",
        input_size: int | None = None,
        num_symbols: int | None = None,
        num_classes: int | None = None,
        per_class: bool = True,
        min_std: float = 0.05,
        init_from_data: bool = True,
        seq_len: int | None = None,
        grid_samples: int = 10,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        check_choice("model.emission", emission, EMISSIONS)
        check_choice("model.topology", topology, TOPOLOGIES)
        check_ints("model.", num_states=(num_states, 1), grid_samples=(grid_samples, 0))
        if per_class and not num_classes:
            raise ValueError("model.per_class=true needs model.num_classes (from labelled data); set "
                             "model.per_class=false for one HMM of all sequences.")
        num_models = int(num_classes) if per_class else 1
        self.emission = make_emission(emission, num_models, num_states, input_size, num_symbols, min_std)
        self.num_models, self.num_states, self.per_class = num_models, num_states, per_class
        self.pi_logits = nn.Parameter(torch.zeros(num_models, num_states))  # (M, K)
        self.A_logits = nn.Parameter(torch.randn(num_models, num_states, num_states) * 0.1)  # (M, K, K)
        # left_to_right (Bakis): start in state 0, then stay or move on to the next state, never back
        ergodic = topology == "ergodic"
        allowed = torch.ones(num_states, num_states) if ergodic else torch.eye(num_states) + torch.eye(num_states).roll(1, 1).triu()
        self.register_buffer("allowed", allowed.bool(), persistent=False)  # (K, K)
        self.register_buffer("start_allowed", torch.arange(num_states) < (num_states if ergodic else 1), persistent=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.seq_len, self.grid_samples, self.init_from_data = seq_len, grid_samples, init_from_data
        self.train_loglik, self.val_loglik, self.test_loglik = MeanMetric(), MeanMetric(), MeanMetric()
        if per_class:
            self.val_acc = MulticlassAccuracy(num_models, average="micro")
            self.test_acc = MulticlassAccuracy(num_models, average="micro")

    # ---- parameters ---------------------------------------------------------------------------------------
    def log_pi(self) -> torch.Tensor:
        return self.pi_logits.masked_fill(~self.start_allowed, float("-inf")).log_softmax(-1)  # (M, K)

    def log_A(self) -> torch.Tensor:
        return self.A_logits.masked_fill(~self.allowed, float("-inf")).log_softmax(-1)  # (M, K, K): rows sum to 1

    def check_data(self, datamodule: LightningDataModule) -> None:
        shape = tuple(data_facts(datamodule).input_shape)
        vector = self.hparams.emission != "categorical"
        if vector and shape and (len(shape) != 2 or shape[1] != self.hparams.input_size):
            raise ValueError(f"{self.hparams.emission} emissions need sequences (time, {self.hparams.input_size}); the data gives "
                             f"examples of shape {shape} (use a sequence dataset such as data=seq_mnist).")

    def setup(self, stage: str) -> None:
        """Start the Gaussian means left to right: state k of class c at the mean row of the k-th time segment of
        class c's training sequences (a checkpoint being resumed overwrites this)."""
        if stage != "fit" or not self.init_from_data or self.hparams.emission == "categorical":
            return
        datamodule = self._trainer.datamodule if self._trainer is not None else None  # none outside a Trainer
        if datamodule is None:
            return
        xs, ys = [], []
        for i, (x, y) in enumerate(datamodule.train_dataloader()):
            xs.append(x)
            ys.append(y)
            if i >= 20:
                break
        x, y = torch.cat(xs).float(), torch.cat(ys)
        t, k = x.shape[1], self.num_states
        segment = torch.arange(t) * k // t  # (T,): which state's segment each time step is in
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in range(self.num_models):
                xm = x[y == m] if self.per_class else x
                for s in range(k):
                    rows = xm[:, segment == s].reshape(-1, x.shape[-1])
                    if len(rows) == 0:
                        continue
                    if isinstance(self.emission, BernoulliEmission):
                        self.emission.init_from_rows(m, s, rows)
                        continue
                    self.emission.mean[m, s] = rows.mean(0) + 0.01 * torch.randn(rows.shape[1], generator=g)
                    std = rows.std(0).clamp_min(self.emission.min_std + 1e-3) - self.emission.min_std
                    self.emission.raw_std[m, s] = torch.log(torch.expm1(std))

    # ---- likelihoods ------------------------------------------------------------------------------------
    def log_likelihoods(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, ...) -> log p(x | model m) (B, M)."""
        log_b = self.emission.log_prob(x)  # (B, M, T, K)
        return forward_log_likelihood(self.log_pi(), self.log_A(), log_b)

    def _own(self, ll: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ll.gather(1, y.long().unsqueeze(1)).squeeze(1) if self.per_class else ll[:, 0]

    def viterbi(self, x: torch.Tensor, model: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The most likely state path under HMM `model`: (B, T) states and log p(x, path) (B,)."""
        log_b = self.emission.log_prob(x)[:, model]  # (B, T, K)
        return viterbi(self.log_pi()[model], self.log_A()[model], log_b)

    @torch.no_grad()
    def sample(self, n: int, model: int = 0, length: int | None = None, seed: int | None = None) -> torch.Tensor:
        """n sequences of `length` (default the data's) from HMM `model`: (n, T, D) or (n, T) symbols."""
        length = length or self.seq_len
        if not length:
            raise ValueError("sampling needs a length: model.seq_len (from the data) or sample(length=...).")
        g = torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        states = sample_states(self.log_pi()[model], self.log_A()[model], n, length, generator=g)
        return self.emission.sample(model, states, generator=g)

    # ---- steps ------------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        own = self._own(self.log_likelihoods(x), y)  # (B,)
        self.train_loglik.update(own.detach())
        self.log("train/loglik", self.train_loglik, on_step=False, on_epoch=True, prog_bar=True)
        return -own.mean() / x.shape[1]  # per time step, so learning rates do not depend on the length

    def _evaluate(self, split: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        ll = self.log_likelihoods(x)  # (B, M)
        loglik = getattr(self, f"{split}_loglik")
        loglik.update(self._own(ll, y))
        self.log(f"{split}/loglik", loglik, prog_bar=split == "val")
        if self.per_class:
            acc = getattr(self, f"{split}_acc")
            acc.update(ll.argmax(1), y)
            self.log(f"{split}/acc", acc, prog_bar=split == "val")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluate("test", batch)

    def on_validation_epoch_end(self) -> None:
        """A grid of sequences sampled from each HMM, one row per class, drawn as images (rows of pixels)."""
        if self.trainer.sanity_checking or self.hparams.emission == "categorical" or not self.grid_samples:
            return
        if not self.seq_len:
            return
        rows = [self.sample(self.grid_samples, m, seed=m) for m in range(self.num_models)]
        images = torch.cat(rows).unsqueeze(1).clamp(0, 1)  # (M * n, 1, T, D)
        log_grid(self, images, "samples", nrow=self.grid_samples)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure(self, self.optimizer_factory, self.scheduler_factory)
