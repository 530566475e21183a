import functools

import pytest
import torch
from torch import nn

from helpers import make_cfg
from lab.backbones import MLP
from lab.errors import ConfigError
from lab.models import Classifier
from lab.modes.attack import Attack
from lab.robustness import AdversarialTraining, Pixels, adversarial_examples, fgsm, pgd

MEAN, STD = 0.1307, 0.3081


def linear_classifier(in_features: int = 12, num_classes: int = 3, seed: int = 0, **kw) -> Classifier:
    """A Classifier that is a linear model: an MLP with no hidden layers, then the head."""
    torch.manual_seed(seed)
    return Classifier(MLP(in_features=in_features, hidden_sizes=()), functools.partial(torch.optim.SGD, lr=0.1),
                      num_classes=num_classes, **kw).eval()


def test_fgsm_on_a_linear_model_moves_each_pixel_by_eps_times_the_sign_of_the_known_gradient():
    model = linear_classifier()
    pixels = Pixels(MEAN, STD)
    x01 = 0.4 + 0.2 * torch.rand(5, 12)  # away from 0 and 1: no clamping
    y = torch.tensor([0, 1, 2, 0, 1])
    x = (x01 - MEAN) / STD
    # cross-entropy of logits W x_model + b: d loss / d x01 = W^T (softmax - onehot) / std
    w = model.head.weight.detach()
    p = torch.softmax(model(x).detach(), -1)
    grad = (p - nn.functional.one_hot(y, 3).float()) @ w / STD
    adv01 = fgsm(model, x, y, 0.05, pixels) * STD + MEAN
    assert torch.allclose(adv01 - x01, 0.05 * grad.sign(), atol=1e-5)


def test_fgsm_clamps_to_valid_images_and_raises_the_loss():
    model = linear_classifier()
    pixels = Pixels(MEAN, STD)
    x01 = torch.rand(32, 12)
    y = torch.randint(0, 3, (32,))
    x = (x01 - MEAN) / STD
    adv01 = pixels.to_pixels(fgsm(model, x, y, 0.3, pixels))
    assert adv01.min() >= 0.0 and adv01.max() <= 1.0
    loss = nn.functional.cross_entropy
    assert loss(model(pixels.to_model(adv01)), y) > loss(model(x), y)


def test_pgd_stays_in_the_eps_ball_and_the_pixel_box():
    torch.manual_seed(1)
    model = Classifier(MLP(in_features=12, hidden_sizes=(16,)), functools.partial(torch.optim.SGD, lr=0.1),
                       num_classes=3).eval()
    pixels = Pixels(MEAN, STD)
    x01 = torch.rand(64, 12)
    x01[:8] = 0.0  # at the box's edges
    x01[8:16] = 1.0
    y = torch.randint(0, 3, (64,))
    adv01 = pixels.to_pixels(pgd(model, pixels.to_model(x01), y, 0.1, pixels, steps=20, step_size=0.05))
    assert (adv01 - x01).abs().max() <= 0.1 + 1e-5
    assert adv01.min() >= -1e-6 and adv01.max() <= 1.0 + 1e-6
    assert (adv01 - x01).abs().max() > 0.09  # it did move to the ball's edge somewhere


class Bump(nn.Module):
    """Two logits of one pixel x: (0, -50 (x - 0.6)^2): the loss of class 0 is largest at x = 0.6, inside the
    ball around 0.5 of radius 0.3, so one full step to the ball's edge (FGSM, to 0.8) overshoots."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), -50 * (x - 0.6) ** 2], 1)


def test_pgd_finds_the_interior_maximum_where_fgsm_overshoots():
    pixels, x, y = Pixels(0.0, 1.0), torch.full((4, 1), 0.5), torch.zeros(4, dtype=torch.long)
    loss = functools.partial(nn.functional.cross_entropy, reduction="none")
    x_fgsm = fgsm(Bump(), x, y, 0.3, pixels)
    x_pgd = pgd(Bump(), x, y, 0.3, pixels, steps=60, step_size=0.01)
    assert torch.allclose(x_fgsm, torch.full_like(x, 0.8))
    assert (x_pgd - 0.6).abs().max() <= 0.01 + 1e-6
    assert (loss(Bump()(x_pgd), y) > loss(Bump()(x_fgsm), y) + 0.1).all()


def test_pgd_equals_fgsm_on_a_two_class_linear_model():
    # the gradient's sign is the same everywhere: both go to the same corner of the eps-ball
    model = linear_classifier(num_classes=2)
    pixels = Pixels(MEAN, STD)
    x = pixels.to_model(0.4 + 0.2 * torch.rand(8, 12))
    y = torch.randint(0, 2, (8,))
    assert torch.allclose(pgd(model, x, y, 0.05, pixels, steps=10), fgsm(model, x, y, 0.05, pixels), atol=1e-5)


def test_attacks_restore_the_training_mode_and_leave_parameter_gradients_alone():
    model = linear_classifier().train()
    x, y = torch.randn(4, 12), torch.zeros(4, dtype=torch.long)
    adversarial_examples(model, x, y, "pgd", 0.1, Pixels(MEAN, STD), pgd_steps=3)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_adversarial_training_option_changes_the_loss_by_the_known_mixture():
    x, y = torch.randn(8, 12), torch.randint(0, 3, (8,))
    plain = linear_classifier()
    adv = linear_classifier(adversarial=AdversarialTraining(eps=0.1, method="fgsm", ratio=0.5))
    adv.pixels = Pixels(MEAN, STD)
    clean_loss = plain.training_step((x, y), 0)
    total = adv.training_step((x, y), 0)
    x_adv = fgsm(adv, x, y, 0.1, adv.pixels)
    adv_loss = nn.functional.cross_entropy(adv(x_adv), y)
    assert adv_loss > clean_loss
    assert float(total.detach()) == pytest.approx(0.5 * clean_loss.item() + 0.5 * adv_loss.item(), rel=1e-5)
    total.backward()  # and it trains: gradients reach the weights
    assert adv.head.weight.grad is not None and adv.head.weight.grad.abs().sum() > 0


def test_adversarial_training_with_eps_0_is_off():
    m = linear_classifier(adversarial=AdversarialTraining(eps=0.0))
    assert m.adversarial is None


def test_adversarial_training_needs_the_data_normalization():
    m = linear_classifier(adversarial=AdversarialTraining(eps=0.1))
    with pytest.raises(RuntimeError, match="check_data"):
        m.training_step((torch.randn(2, 12), torch.zeros(2, dtype=torch.long)), 0)

    class NoNormalization:
        input_shape = (12,)

    with pytest.raises(ValueError, match=r"model.adversarial.eps=0.1 is in pixel units.*gives no normalization"):
        m.check_data(NoNormalization())


@pytest.mark.parametrize(("kw", "message"), [
    ({"eps": -0.1}, r"model.adversarial.eps=-0.1 is not valid: .* in \[0, 1\]"),
    ({"eps": 1.5}, r"model.adversarial.eps=1.5 is not valid"),
    ({"method": "cw"}, r"model.adversarial.method='cw' is not valid; valid choices: fgsm, pgd"),
    ({"pgd_steps": 0}, r"model.adversarial.pgd_steps=0 is not valid"),
    ({"ratio": 0.0}, r"model.adversarial.ratio=0.0 is not valid"),
])
def test_bad_adversarial_settings_name_the_key(kw, message):
    with pytest.raises(ValueError, match=message):
        AdversarialTraining(**kw)


@pytest.mark.parametrize(("overrides", "message"), [
    (["attack.epsilons=[0.1,-0.2]"], r"attack.epsilons=\[0.1, -0.2\]: epsilon=-0.2 is not valid"),
    (["attack.epsilons=[1.5]"], r"epsilon=1.5 is not valid: .* in \[0, 1\]"),
    (["attack.methods=[fgsm,deepfool]"], r"attack.methods=\['fgsm', 'deepfool'\]: 'deepfool' is not valid; valid "
                                         "choices: fgsm, pgd"),
    (["attack.methods=[]"], "attack.methods is empty"),
    (["attack.pgd_steps=0"], "attack.pgd_steps=0 is not valid"),
    (["attack.limit_batches=0"], "attack.limit_batches=0 is not valid"),
])
def test_bad_attack_settings_are_config_errors_naming_the_key(overrides, message, tmp_path):
    cfg = make_cfg(["experiment=cnn_mnist", "mode=attack", *overrides], tmp_path, None)
    with pytest.raises(ConfigError, match=message):
        Attack().check_settings(cfg)


def test_the_classifier_config_builds_adversarial_training(tmp_path):
    from lab.instantiate import instantiate

    cfg = make_cfg(["experiment=mlp_mnist", "model.adversarial.eps=0.2", "model.adversarial.method=pgd"], tmp_path,
                   None)
    node = instantiate(cfg.model.adversarial, "model.adversarial")
    assert isinstance(node, AdversarialTraining) and (node.eps, node.method, node.pgd_steps) == (0.2, "pgd", 7)
