"""mode=predict's pieces (lab/modes/predict.py, predict_inputs.py) on random-weight models and files written here:
the run's own preprocessing, predictions.csv, samplers, and the errors for bad input."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule
from PIL import Image
from torch import nn

from helpers import build, make_cfg, write_image_folder
from lab.contracts import ImageSampler, RunContext
from lab.data import TabularDataModule
from lab.data_model_runner import DataModelRunner
from lab.errors import ConfigError
from lab.modes import predict
from lab.modes.predict_inputs import input_spec, load_image, read_input


def built(experiment: str, tmp_path: Path, data_dir: Path, extra: list[str] = ()):
    """The experiment's runner (random weights), its checkpoint and a context writing into tmp_path/run."""
    cfg = make_cfg([f"experiment={experiment}", "mode=predict", *extra], tmp_path, data_dir)
    runner = build(cfg)
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": runner.model.state_dict()}, ckpt)
    cfg.ckpt_path = str(ckpt)
    return cfg, runner, RunContext(cfg, Path(cfg.paths.output_dir), [], None)


@pytest.fixture(scope="module")
def mnist_runner(tmp_path_factory, data_dir):
    """mlp_mnist's runner with random weights, built once: for what needs only its data module."""
    return built("mlp_mnist", tmp_path_factory.mktemp("mlp"), data_dir)[1]


def the_test_set(runner) -> torch.utils.data.Dataset:
    runner.datamodule.setup("test")
    return runner.datamodule.test_set


def write_pngs(folder: Path, images: torch.Tensor, names: list[str]) -> list[Path]:
    paths = []
    for image, name in zip(images, names, strict=True):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.numpy()).save(path)
        paths.append(path)
    return paths


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("experiment", ["mlp_mnist", "dbn_mnist"])
def test_a_png_folder_gives_one_row_per_image_with_the_models_argmax(experiment, tmp_path, data_dir):
    cfg, runner, context = built(experiment, tmp_path, data_dir)
    ds = the_test_set(runner)
    names = ["b/2.png", "a.png", "b/c/1.png"]  # found recursively, written in sorted path order
    write_pngs(tmp_path / "in", ds.images[:3], names)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    cfg.predict.input = str(tmp_path / "in")
    predict.Predict().check(runner, cfg)
    metrics = predict.Predict().run(runner, context, cfg.ckpt_path)

    rows = read_rows(context.output_dir / "predictions.csv")
    assert [r["path"] for r in rows] == sorted(names)
    assert list(rows[0]) == ["path", "class", *[str(i) for i in range(10)]]
    model = runner.model.eval()
    for r in rows:
        x = ds[names.index(r["path"])][0]  # the data module's own preprocessing of the same image
        assert torch.equal(load_image(tmp_path / "in" / r["path"], input_spec(runner.datamodule)), x)
        probs = torch.softmax(model(x.unsqueeze(0)), -1)[0]
        assert r["class"] == str(int(probs.argmax()))
        got = torch.tensor([float(r[str(i)]) for i in range(10)])
        assert got.sum().item() == pytest.approx(1.0, abs=1e-4)
        assert torch.allclose(got, probs, atol=1e-5)
    assert metrics["predict/count"] == 3


def test_sequence_models_read_an_image_row_by_row(tmp_path, data_dir):
    cfg, runner, _ = built("lstm_seqmnist", tmp_path, data_dir)
    ds = the_test_set(runner)
    [path] = write_pngs(tmp_path, ds.images[:1], ["digit.png"])
    x = load_image(path, input_spec(runner.datamodule))
    assert x.shape == (28, 28) and torch.equal(x, ds[0][0])


def test_an_image_folder_model_gets_its_grey_and_resize_preprocessing(tmp_path):
    from lab.data import ImageFolderDataModule

    root = write_image_folder(tmp_path / "colours", 4)
    dm = ImageFolderDataModule(str(root), grayscale=True, image_size=16, val_size=0.25, batch_size=4)
    dm.setup()
    spec = input_spec(dm)
    assert (spec.channels, spec.resize) == (1, 16)
    for i in range(len(dm.val_set)):  # the validation images, as the data module prepares them
        file, _ = dm.val_set.base.dataset.samples[dm.val_set.base.indices[i]]
        assert torch.equal(load_image(Path(file), spec), dm.val_set[i][0])


def test_an_rgb_image_is_made_grey_for_a_grey_model(tmp_path, mnist_runner):
    runner = mnist_runner
    grey = the_test_set(runner).images[0].numpy()
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(grey).save(tmp_path / "grey.png")
    spec = input_spec(runner.datamodule)
    diff = (load_image(tmp_path / "rgb.png", spec) - load_image(tmp_path / "grey.png", spec)).abs().max()
    assert diff <= 1 / 255 / spec.std + 1e-6  # torchvision's grey weights round to within one level


def test_arrays_in_pixel_scale_and_uint8_give_the_image_inputs(tmp_path, mnist_runner):
    runner = mnist_runner
    ds = the_test_set(runner)
    spec = input_spec(runner.datamodule)
    expected = torch.stack([ds[i][0] for i in range(4)])
    pixels = ds.images[:4].numpy()
    np.save(tmp_path / "u8.npy", pixels)  # (N, 28, 28) uint8: 0-255
    np.save(tmp_path / "flat.npy", pixels.reshape(4, -1).astype(np.float32) / 255)  # (N, 784) in [0, 1]
    np.savetxt(tmp_path / "rows.csv", pixels.reshape(4, -1) / 255, delimiter=",")
    for name in ("u8.npy", "flat.npy", "rows.csv"):
        examples = read_input(str(tmp_path / name), spec)
        assert examples.key == "row" and examples.names == ["0", "1", "2", "3"]
        [(_, x)] = list(examples.batches(spec, 10))
        assert torch.allclose(x, expected, atol=1e-5), name


@pytest.mark.parametrize(("write", "message"), [
    (lambda d: Image.fromarray(np.zeros((32, 32), np.uint8)).save(d / "big.png"),
     r"1 of 1 image\(s\) are not 28x28 pixels: big.png \(32x32\).*The model takes grey images of 28x28 pixels"),
    (lambda d: np.savetxt(d / "x.csv", np.zeros((2, 780)), delimiter=","),
     r"shape \(2, 780\) \(780 columns\); the model needs \(N, 1, 28, 28\) or \(N, 784\) or \(N, 28, 28\), i.e. 784"),
    (lambda d: np.save(d / "x.npy", np.zeros((2, 3, 28, 28), np.float32)),
     r"shape \(2, 3, 28, 28\) \(2352 values per example\)"),
    (lambda d: np.save(d / "x.npy", np.full((2, 784), 255.0)),
     r"values range from 255 to 255; arrays of image data hold pixels in \[0, 1\].*uint8"),
    (lambda d: Image.fromarray(np.zeros((28, 28), np.uint16)).save(d / "deep.png"),
     r"not 8-bit grey or colour images \(PIL mode in parentheses\): deep.png \(I;16\)"),
    (lambda d: (d / "sub").mkdir() or (d / "sub" / "a.txt").write_text("x"), r"the folder holds no image files"),
    (lambda d: (d / "x.csv").write_text("a,b\n1,2\n"), r"shape \(1, 2\)"),
    (lambda d: (d / "x.csv").write_text("0.1,0.2\n0.3,oops\n"), r"data row 2, column 2 holds 'oops', not a number"),
    (lambda d: (d / "x.json").write_text("{}"), r".json is not a format mode=predict reads"),
])
def test_bad_input_is_one_clear_error_naming_what_the_model_takes(write, message, tmp_path, mnist_runner):
    runner = mnist_runner
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder)
    files = [f for f in folder.iterdir() if f.is_file()]
    target = files[0] if len(files) == 1 and files[0].suffix != ".png" else folder
    with pytest.raises(ConfigError, match=message):
        read_input(str(target), input_spec(runner.datamodule))


def test_no_input_and_unknown_settings_are_refused_before_anything_is_built(tmp_path, data_dir):
    cfg, runner, _ = built("mlp_mnist", tmp_path, data_dir)
    with pytest.raises(ConfigError, match=r"predict.input is not set: .*grey images of 28x28 pixels"):
        predict.Predict().check(runner, cfg)
    cfg.predict.batch_size = 0
    with pytest.raises(ConfigError, match=r"predict.batch_size=0 is not valid: it must be an integer >= 1"):
        predict.Predict().check_settings(cfg)
    cfg.predict.batch_size, cfg.predict.input = 8, str(tmp_path / "missing")
    with pytest.raises(ConfigError, match="predict.input=.*missing': no such file or folder"):
        predict.Predict().check_settings(cfg)
    cfg.predict.input, cfg.predict.output = str(tmp_path / "model.ckpt"), "out.txt"
    with pytest.raises(ConfigError, match=r"predict.output='out.txt' is not valid: predictions are written as CSV"):
        predict.table_path(cfg.predict.output, tmp_path)


@pytest.mark.parametrize("experiment", ["vae_mnist", "rbm_mnist", "cgan_mnist"])
def test_generative_models_sample_images_in_0_1_of_their_size(experiment, tmp_path, data_dir):
    extra = ["model.sample_steps=5"] if experiment == "rbm_mnist" else []
    cfg, runner, context = built(experiment, tmp_path, data_dir, [*extra, "predict.num_samples=23",
                                                                   "predict.batch_size=10"])
    predict.Predict().check(runner, cfg)
    metrics = predict.Predict().run(runner, context, cfg.ckpt_path)
    folder = context.output_dir / "predictions"
    files = sorted(folder.glob("sample_*.png"))
    assert len(files) == 23 and metrics["predict/count"] == 23
    assert Image.open(files[0]).size == (28, 28)
    # 10 a row, 2-pixel borders, shown 2x: 3 rows of 10
    assert Image.open(folder / "grid.png").size == (2 * (10 * 30 + 2), 2 * (3 * 30 + 2))
    if experiment == "cgan_mnist":  # one class per grid row, named in the file
        assert files[0].name == "sample_0000_0.png" and files[12].name == "sample_0012_1.png"


class Shades(ImageSampler, LightningModule):
    """A user's image generator, by the ImageSampler contract alone: sample i is a 28x28 grey image of shade i/100."""

    grid_row = 4

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.01))  # a weight, so that a checkpoint holds something

    def sample_images(self, indices: torch.Tensor) -> tuple[torch.Tensor, None]:
        return (indices.float() * self.scale).view(-1, 1, 1, 1).expand(-1, 1, 28, 28), None


def test_a_users_image_sampler_is_sampled_by_its_contract(tmp_path, data_dir):
    cfg, runner, context = built("vae_mnist", tmp_path, data_dir, ["predict.num_samples=6", "predict.batch_size=4"])
    runner.model = Shades()
    torch.save({"state_dict": runner.model.state_dict()}, cfg.ckpt_path)
    predict.Predict().check(runner, cfg)
    assert predict.Predict().run(runner, context, cfg.ckpt_path)["predict/count"] == 6
    files = sorted((context.output_dir / "predictions").glob("sample_*.png"))
    assert [np.asarray(Image.open(f))[0, 0] for f in files] == [round(i * 0.01 * 255) for i in range(6)]
    # 4 a row (the model's grid_row): 2 rows, 2-pixel borders, shown 2x
    assert Image.open(context.output_dir / "predictions" / "grid.png").size == (2 * (4 * 30 + 2), 2 * (2 * 30 + 2))


def test_generative_models_take_no_input(tmp_path, data_dir):
    cfg, runner, _ = built("vae_mnist", tmp_path, data_dir, [f"predict.input={tmp_path}"])
    with pytest.raises(ConfigError, match="predict.input=.* is for classifiers and regressors; a generative model"):
        predict.Predict().check(runner, cfg)


def test_models_predict_does_not_apply_to_are_refused_naming_the_valid_ones(tmp_path, data_dir):
    cfg, runner, _ = built("hmm_seqmnist", tmp_path, data_dir)
    with pytest.raises(ConfigError, match=r"mode=predict applies to classifiers .*RL agents .*; `generative.hmm"):
        predict.Predict().check(runner, cfg)


class StandInTabular(TabularDataModule):
    """lab.data.TabularDataModule without its table: the columns and statistics that predictions use."""

    feature_names = ["age", "height", "weight"]
    target_names = ["price", "volume"]
    mean, std = np.array([40.0, 170.0, 70.0]), np.array([10.0, 10.0, 5.0])

    def __init__(self) -> None:  # no table to read
        pass

    def preprocess(self, features: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((features - self.mean) / self.std, dtype=torch.float32)


def test_regressors_read_features_by_name_and_write_one_column_per_target(tmp_path):
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, -1.0]]))
        model.bias.copy_(torch.tensor([100.0, 0.0]))
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    runner = DataModelRunner()
    runner.datamodule, runner.model = StandInTabular(), model
    # columns in another order, plus a target column the features leave out
    (tmp_path / "in.csv").write_text("weight,price,age,height\n75,1,50,160\n70,2,40,170\n")
    cfg = make_cfg(["mode=predict", f"predict.input={tmp_path / 'in.csv'}"], tmp_path, None, smoke=False)
    context = RunContext(cfg, tmp_path / "run", [], None)
    metrics = predict.predict_table(runner, context, str(ckpt), "regressor")
    rows = read_rows(tmp_path / "run" / "predictions.csv")
    assert list(rows[0]) == ["row", "price", "volume"]
    # standardized (1, -1, 1) -> price 100 + 1, volume 2 * -1 - 1; (0, 0, 0) -> 100, 0
    assert [[float(r["price"]), float(r["volume"])] for r in rows] == [[101.0, -3.0], [100.0, 0.0]]
    assert metrics["predict/price_mean"] == pytest.approx(100.5)

    spec = input_spec(StandInTabular())
    (tmp_path / "bad.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ConfigError, match=r"shape \(2, 2\) \(2 columns\); the model needs \(N, 3\).*3 features "
                                          r"\(age, height, weight\)"):
        read_input(str(tmp_path / "bad.csv"), spec)
    (tmp_path / "named.csv").write_text("age,weight\n1,2\n")
    with pytest.raises(ConfigError, match="its header lacks the feature column\\(s\\) height"):
        read_input(str(tmp_path / "named.csv"), spec)
