import functools

import pytest
import torch

from helpers import make_cfg
from lab.backbones import MLP
from lab.errors import ConfigError
from lab.models import Classifier
from lab.modes.explain import Explain, as_heat_map, attribute, attribution_figure
from lab.robustness import PixelModel, Pixels


def linear_classifier(in_features: int = 12, num_classes: int = 3) -> Classifier:
    """A Classifier that is a linear model: logits = W x + b (an MLP with no hidden layers, then the head)."""
    torch.manual_seed(0)
    return Classifier(MLP(in_features=in_features, hidden_sizes=()), functools.partial(torch.optim.SGD, lr=0.1),
                      num_classes=num_classes).eval()


def test_saliency_of_a_linear_model_is_the_absolute_weights_of_the_target_class():
    model = linear_classifier()
    x, target = torch.randn(4, 12), torch.tensor([0, 2, 1, 2])
    attr, delta = attribute(model, x, target, "saliency")
    assert delta is None
    assert torch.allclose(attr, model.head.weight.detach()[target].abs())


def test_integrated_gradients_of_a_linear_model_from_zero_are_input_times_weight():
    model = linear_classifier()
    x, target = torch.randn(4, 12), torch.tensor([1, 0, 2, 1])
    attr, delta = attribute(model, x, target, "integrated_gradients", ig_steps=8)
    w = model.head.weight.detach()[target]
    assert torch.allclose(attr, x * w, atol=1e-5)
    # completeness: the attributions add up to logit(x) - logit(0)
    rise = (model(x) - model(torch.zeros_like(x))).detach().gather(1, target[:, None])[:, 0]
    assert torch.allclose(attr.sum(1), rise, atol=1e-5)
    assert delta.abs().max() < 1e-5


def test_attributions_in_pixel_units_divide_the_weights_by_the_std_and_start_from_black():
    mean, std = 0.1307, 0.3081
    model = PixelModel(linear_classifier(), Pixels(mean, std))
    x01, target = torch.rand(3, 12), torch.tensor([2, 2, 0])
    w = model.model.head.weight.detach()[target]
    saliency, _ = attribute(model, x01, target, "saliency")
    assert torch.allclose(saliency, w.abs() / std, atol=1e-6)
    ig, delta = attribute(model, x01, target, "integrated_gradients", ig_steps=4)
    assert torch.allclose(ig, x01 * w / std, atol=1e-5) and delta.abs().max() < 1e-4


def test_heat_maps_of_images_and_sequences():
    attr = torch.tensor([[[1.0, -3.0]], [[-2.0, 1.0]], [[0.5, 0.5]]])  # (C=3, H=1, W=2)
    assert as_heat_map(attr, "saliency").tolist() == [[2.0, 3.0]]  # max |.| over channels
    assert as_heat_map(attr, "integrated_gradients").tolist() == [[-0.5, -1.5]]  # sum over channels
    seq = torch.randn(28, 28)  # (T, F): drawn as it is
    assert torch.equal(as_heat_map(seq, "integrated_gradients"), seq)


def test_the_grid_has_input_and_heat_map_per_example_titled_with_true_and_predicted_class():
    x01 = torch.rand(6, 1, 8, 8)
    y, pred = torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([0, 1, 2, 3, 4, 9])
    fig = attribution_figure(x01, torch.randn(6, 1, 8, 8), y, pred, [f"c{i}" for i in range(10)],
                             "integrated_gradients")
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert len(titles) == 12  # 6 inputs and 6 heat maps
    assert "true c5\npred c9" in titles and "true c0\npred c0" in titles
    import matplotlib.pyplot as plt

    plt.close(fig)


@pytest.mark.parametrize(("overrides", "message"), [
    (["explain.methods=[saliency,gradcam]"], r"explain.methods=\['saliency', 'gradcam'\]: 'gradcam' is not valid; "
                                             "valid choices: saliency, integrated_gradients"),
    (["explain.methods=[]"], "explain.methods is empty"),
    (["explain.num_images=0"], "explain.num_images=0 is not valid"),
    (["explain.ig_steps=0.5"], "explain.ig_steps=0.5 is not valid: it must be an integer"),
])
def test_bad_explain_settings_are_config_errors_naming_the_key(overrides, message, tmp_path):
    cfg = make_cfg(["experiment=cnn_mnist", "mode=explain", *overrides], tmp_path, None)
    with pytest.raises(ConfigError, match=message):
        Explain().check_settings(cfg)
