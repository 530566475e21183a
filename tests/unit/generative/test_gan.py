import functools

import pytest
import torch

from generative.gan import GAN
from generative.gan.losses import discriminator_loss, generator_loss, gradient_penalty
from generative.gan.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


def test_gradient_penalty_known_case():
    """For D(x) = <a, x>, the gradient is a everywhere: the penalty is (||a|| - 1)^2."""
    a = torch.tensor([3.0, 4.0])
    gp = gradient_penalty(lambda x: x @ a, torch.randn(16, 2), torch.randn(16, 2))
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)
    unit = a / 5.0
    assert gradient_penalty(lambda x: x @ unit, torch.randn(8, 2), torch.randn(8, 2)).item() == pytest.approx(0.0, abs=1e-10)


def test_losses_known_values():
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 0.5])
    assert discriminator_loss("hinge", real, fake).item() == pytest.approx((0 + 1) / 2 + (0 + 1.5) / 2)
    assert discriminator_loss("wgan_gp", real, fake).item() == pytest.approx(-0.25 - 1.0)
    sp = torch.nn.functional.softplus
    ns = sp(-real).mean() + sp(fake).mean()
    assert discriminator_loss("non_saturating", real, fake).item() == pytest.approx(ns.item())
    assert generator_loss("non_saturating", fake).item() == pytest.approx(sp(-fake).mean().item())
    assert generator_loss("hinge", fake).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="model.loss='lsgan'.*non_saturating"):
        generator_loss("lsgan", fake)


@pytest.mark.parametrize("conditional", [0, 10])
def test_network_shapes(conditional):
    z, y = torch.randn(4, 16), torch.randint(0, 10, (4,))
    y = y if conditional else None
    for g, d in [(DCGANGenerator(16, 8, num_classes=conditional), DCGANDiscriminator(8, num_classes=conditional)),
                 (MLPGenerator(16, (32,), num_classes=conditional), MLPDiscriminator((32,), num_classes=conditional))]:
        x = g(z, y)
        assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
        assert d(x, y).shape == (4,)


def _gan(loss: str = "non_saturating", n_critic: int = 1) -> GAN:
    torch.manual_seed(0)
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    return GAN(DCGANGenerator(8, 8), DCGANDiscriminator(8, norm="layer"), adam, adam, loss=loss, n_critic=n_critic,
               ema_decay=0.9, quality_dataset=None)


def _run_steps(model: GAN, steps: int) -> None:
    from lightning.pytorch import Trainer

    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, max_steps=steps, limit_val_batches=0)
    x = torch.rand(8 * 16, 1, 28, 28) * 2 - 1
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(len(x), dtype=torch.long)),
                                         batch_size=8)
    trainer.fit(model, train_dataloaders=loader)


def params(m: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def test_discriminator_steps_leave_the_generator_unchanged():
    """With n_critic large, only discriminator steps happen: generator weights must not move."""
    model = _gan(n_critic=1000)
    g0, d0 = params(model.generator), params(model.discriminator)
    _run_steps(model, steps=3)
    assert all(torch.equal(a, b) for a, b in zip(g0, params(model.generator), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, params(model.discriminator), strict=True))


def test_generator_steps_leave_the_discriminator_unchanged():
    """Discriminator optimizer with lr 0: whatever moves the discriminator would have to come from the
    generator steps (their loss back-propagates through D); it must stay exactly as it was."""
    torch.manual_seed(0)
    model = GAN(DCGANGenerator(8, 8), DCGANDiscriminator(8, norm="layer"), functools.partial(torch.optim.Adam, lr=1e-3),
                functools.partial(torch.optim.SGD, lr=0.0), ema_decay=None, quality_dataset=None)
    g0, d0 = params(model.generator), params(model.discriminator)
    _run_steps(model, steps=4)
    assert all(torch.equal(a, b) for a, b in zip(d0, params(model.discriminator), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(g0, params(model.generator), strict=True))


def test_training_alternates_and_updates_the_ema():
    model = _gan(loss="wgan_gp", n_critic=2)
    ema0 = params(model.generator_ema.module)
    _run_steps(model, steps=6)  # Lightning counts optimizer steps: 4 critic + 2 generator
    assert any(not torch.equal(a, b) for a, b in zip(ema0, params(model.generator_ema.module), strict=True))
    assert model.sample(5).shape == (5, 1, 28, 28)


def test_ema_warmup_forgets_the_initial_weights():
    from generative.gan.module import ema_with_warmup

    avg = ema_with_warmup(0.999)
    a = torch.zeros(1)
    for n in range(500):
        a = avg(a, torch.ones(1), torch.tensor(n))
    assert a.item() > 0.95  # a fixed decay of 0.999 would be at 1 - 0.999**500 = 0.39
    assert avg(torch.zeros(1), torch.ones(1), torch.tensor(10**6)).item() == pytest.approx(0.001)


@pytest.mark.parametrize("kwargs,match", [({"loss": "lsgan"}, "model.loss"), ({"n_critic": 0}, "model.n_critic"),
                                          ({"ema_decay": 1.5}, "model.ema_decay")])
def test_bad_arguments_name_the_key(kwargs, match):
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    with pytest.raises(ValueError, match=match):
        GAN(DCGANGenerator(8, 8), DCGANDiscriminator(8), adam, adam, quality_dataset=None, **kwargs)


def test_a_conditional_grid_has_one_row_per_class():
    adam = functools.partial(torch.optim.Adam, lr=1e-3)
    gan = GAN(DCGANGenerator(8, 8, num_classes=10), DCGANDiscriminator(8, num_classes=10), adam, adam,
              quality_dataset=None)
    assert gan.fixed_y.view(10, 10).tolist() == [[k] * 10 for k in range(10)]


def test_spectral_norm_discriminator_has_unit_spectral_norms():
    torch.manual_seed(0)
    d = DCGANDiscriminator(8, norm="spectral")
    d.train()
    for _ in range(30):  # power iterations converge as the discriminator is used
        d(torch.randn(4, 1, 28, 28))
    linear = d.score.weight  # the parametrized (normalized) weight
    assert torch.linalg.matrix_norm(linear, ord=2).item() == pytest.approx(1.0, rel=1e-2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
