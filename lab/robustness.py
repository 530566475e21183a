"""L-inf adversarial examples (FGSM, PGD) in pixel units, shared by `mode=attack` (lab.modes.attack) and the
classifier's adversarial training (`model.adversarial`, lab.models.Classifier).

The data modules hand models normalized inputs, x_model = (x01 - mean) / std (`datamodule.mean_std`), so an
epsilon in pixel units of [0, 1] images is applied where it means something: the input is mapped back to
pixels, perturbed there, clamped to [0, 1] (a valid image), and normalized again for the model.

- FGSM (Goodfellow et al., 2015): x01 + eps * sign(grad_x01 loss), one step.
- PGD (Madry et al., 2018): a random start in the eps-ball, then `steps` signed-gradient steps of `step_size`
  (default 2.5 * eps / steps), each projected back onto the eps-ball around x01 and onto [0, 1].
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab.checks import check_choice, check_number

ATTACKS = ("fgsm", "pgd")
RECURRENT = (nn.RNNBase,)


def check_epsilon(key: str, eps: Any) -> None:
    """ValueError unless `eps` is a number in [0, 1] (pixel units of [0, 1] images)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps <= 1.0:
        raise ValueError(f"{key}={eps!r} is not valid: an L-inf radius in pixel units of [0, 1] images must be a "
                         "number in [0, 1] (e.g. 0.1 = about 25 of 255 grey levels).")


def check_attack(prefix: str, method: Any, pgd_steps: Any, pgd_step_size: Any) -> None:
    """ValueError naming `<prefix>method` / `pgd_steps` / `pgd_step_size` when one is not valid."""
    check_choice(f"{prefix}method", method, ATTACKS)
    check_number(f"{prefix}pgd_steps", pgd_steps, 1, integer=True, strict=False)
    if pgd_step_size is not None:
        check_number(f"{prefix}pgd_step_size", pgd_step_size, 0.0)


class Pixels:
    """The normalization of a model's inputs: x_model = (x01 - mean) / std; mean and std are numbers or
    per-channel tensors (C, 1, 1), as `datamodule.mean_std` gives them."""

    def __init__(self, mean: Any = 0.0, std: Any = 1.0) -> None:
        self.mean, self.std = mean, std

    @classmethod
    def of(cls, datamodule: Any) -> Pixels | None:
        """The datamodule's normalization, or None when it has none (no `mean_std`: not [0, 1] images)."""
        try:
            mean, std = datamodule.mean_std
        except (AttributeError, NotImplementedError):
            return None
        return cls(mean, std)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                torch.as_tensor(self.std, dtype=x.dtype, device=x.device))

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return x * std + mean

    def to_model(self, x01: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x01)
        return (x01 - mean) / std


class PixelModel(nn.Module):
    """`model` taking [0, 1] images: normalizes, then calls it (what attacks and attributions differentiate)."""

    def __init__(self, model: nn.Module, pixels: Pixels) -> None:
        super().__init__()
        self.model, self.pixels = model, pixels

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.model(self.pixels.to_model(x01))


@contextmanager
def input_gradients(model: nn.Module) -> Iterator[None]:
    """Autograd on, and cuDNN off for recurrent models on the GPU: cuDNN's RNN backward runs only in training
    mode, and gradients with respect to the input are taken with the model in eval mode."""
    recurrent = any(isinstance(m, RECURRENT) for m in model.modules())
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False) if recurrent else nullcontext():
        yield


def _loss_gradient(model: PixelModel, x01: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x01 = x01.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x01), y, reduction="sum")  # sum: each example's gradient is its own loss's
    return torch.autograd.grad(loss, x01)[0]  # parameters' .grad untouched


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, pixels: Pixels) -> torch.Tensor:
    """FGSM adversarial examples of the normalized inputs x (B, ...) with labels y: normalized, like x."""
    pm = PixelModel(model, pixels)
    x01 = pixels.to_pixels(x.detach())
    with input_gradients(model):
        grad = _loss_gradient(pm, x01, y)
    return pixels.to_model((x01 + eps * grad.sign()).clamp(0.0, 1.0)).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, pixels: Pixels, steps: int,
        step_size: float | None = None, random_start: bool = True) -> torch.Tensor:
    """PGD (L-inf) adversarial examples of the normalized inputs x with labels y: normalized, like x."""
    step_size = 2.5 * eps / steps if step_size is None else step_size
    pm = PixelModel(model, pixels)
    x01 = pixels.to_pixels(x.detach())
    adv = x01.clone()
    if random_start:
        adv = (adv + torch.empty_like(adv).uniform_(-eps, eps)).clamp(0.0, 1.0)
    with input_gradients(model):
        for _ in range(steps):
            adv = adv + step_size * _loss_gradient(pm, adv, y).sign()
            adv = torch.min(torch.max(adv, x01 - eps), x01 + eps).clamp(0.0, 1.0)  # onto the ball, then the box
    return pixels.to_model(adv).detach()


def adversarial_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, eps: float,
                         pixels: Pixels, pgd_steps: int = 10, pgd_step_size: float | None = None) -> torch.Tensor:
    """`method` (fgsm | pgd) examples of x, made with `model` in eval mode (dropout off, batch-norm statistics
    fixed), which is then put back in the mode it was in."""
    check_choice("method", method, ATTACKS)
    was_training = model.training
    model.eval()
    try:
        if method == "fgsm":
            return fgsm(model, x, y, eps, pixels)
        return pgd(model, x, y, eps, pixels, pgd_steps, pgd_step_size)
    finally:
        model.train(was_training)


class AdversarialTraining:
    """`model.adversarial`: train on adversarial examples made on the fly from each batch (eps 0: off).

    The training loss is (1 - ratio) * loss(clean batch) + ratio * loss(adversarial batch): ratio 0.5 is
    Goodfellow et al.'s mix, 1 trains on adversarial examples only (Madry et al.)."""

    def __init__(self, eps: float = 0.0, method: str = "fgsm", pgd_steps: int = 7, pgd_step_size: float | None = None,
                 ratio: float = 0.5) -> None:
        check_epsilon("model.adversarial.eps", eps)
        check_attack("model.adversarial.", method, pgd_steps, pgd_step_size)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
            raise ValueError(f"model.adversarial.ratio={ratio!r} is not valid: it must be in (0, 1] (the weight of "
                             "the adversarial examples' loss; 1 trains on them only).")
        self.eps, self.method, self.pgd_steps = float(eps), method, pgd_steps
        self.pgd_step_size, self.ratio = pgd_step_size, float(ratio)

    @property
    def enabled(self) -> bool:
        return self.eps > 0

    def examples(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, pixels: Pixels) -> torch.Tensor:
        return adversarial_examples(model, x, y, self.method, self.eps, pixels, self.pgd_steps, self.pgd_step_size)

    def __repr__(self) -> str:
        return (f"AdversarialTraining(eps={self.eps}, method={self.method!r}, pgd_steps={self.pgd_steps}, "
                f"pgd_step_size={self.pgd_step_size}, ratio={self.ratio})")
