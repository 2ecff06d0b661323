"""Data: MNIST-1D generated offline (global RNG untouched, cached), image data sets from tiny files in the real
on-disk formats (IDX for MNIST/Fashion-MNIST, pickled python batches for CIFAR-10)."""

from __future__ import annotations

import functools
import operator
import pickle
import random
import struct

import numpy as np
import pytest
import torch

from landscape import data as data_module
from landscape.data import Dataset, cache_root, image_dataset, isolated_global_rng, load_dataset, mnist1d


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return root, mnist1d(root)


def test_mnist1d_shapes_and_values(mnist):
    _, ds = mnist
    assert ds.x_train.shape == (4000, 40)
    assert ds.x_test.shape == (1000, 40)
    assert ds.y_train.shape == (4000,)
    assert ds.y_test.shape == (1000,)
    assert ds.x_train.dtype == torch.float32
    assert ds.y_train.dtype == torch.int64
    assert ds.input_shape == (40,)
    assert ds.num_classes == 10
    # 500 samples of each class in total (make_dataset draws num_samples // 10 per template)
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_test]), minlength=10)
    assert counts.tolist() == [500] * 10
    # the generator standardises all 5000 signals together: mean 0, std 1 over train + test
    x = torch.cat([ds.x_train, ds.x_test]).double()
    assert abs(float(x.mean())) < 1e-6
    assert float(x.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)


def test_mnist1d_cached_on_disk_and_in_memory(mnist):
    root, ds = mnist
    files = list((root / "data").iterdir())
    assert [f.name for f in files] == ["mnist1d_v1.npz"]  # no temporary file left behind
    assert mnist1d(root) is ds  # memory cache
    data_module._MEMORY.clear()
    again = mnist1d(root)  # from the disk cache
    assert again is not ds
    assert torch.equal(again.x_train, ds.x_train)
    assert torch.equal(again.y_test, ds.y_test)


def test_mnist1d_regenerated_identically_and_global_rng_untouched(mnist):
    root, ds = mnist
    random.seed(123)
    np.random.seed(456)  # noqa: NPY002 (the global state is what is under test)
    expected_py, expected_np = random.random(), np.random.rand(3)  # noqa: NPY002
    random.seed(123)
    np.random.seed(456)  # noqa: NPY002
    fresh = mnist1d(root, regenerate=True)
    assert random.random() == expected_py
    np.testing.assert_array_equal(np.random.rand(3), expected_np)  # noqa: NPY002
    assert torch.equal(fresh.x_train, ds.x_train)
    assert torch.equal(fresh.y_train, ds.y_train)


def test_isolated_global_rng_restores_after_error():
    random.seed(1)
    state = random.getstate()

    def reseed_and_fail():
        with isolated_global_rng():
            random.seed(99)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        reseed_and_fail()
    assert random.getstate() == state


def test_corrupt_disk_cache_is_rebuilt(tmp_path, mnist):
    _, ds = mnist
    path = tmp_path / "data" / "mnist1d_v1.npz"
    path.parent.mkdir()
    path.write_bytes(b"not an npz file")
    rebuilt = mnist1d(tmp_path)
    assert torch.equal(rebuilt.x_test, ds.x_test)
    with np.load(path) as f:
        assert f["x_train"].shape == (4000, 40)


def test_cache_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("LANDSCAPE_CACHE", raising=False)
    assert str(cache_root()) == "results"
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    assert cache_root(tmp_path / "x") == tmp_path / "x"


def test_subset_and_unknown_names(mnist):
    _, ds = mnist
    small = ds.subset(10, 5)
    assert small.x_train.shape == (10, 40)
    assert small.y_test.shape == (5,)
    with pytest.raises(ValueError, match="num_train"):
        ds.subset(0)
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="unknown image data set"):
        image_dataset("svhn", ".")


# ----------------------------------------------------------------------------------------------------------------
# Image data sets from tiny files in the real formats


def _write_idx(path, array: np.ndarray) -> None:
    """IDX (LeCun): magic = 0x00 0x00 <type 0x08 = ubyte> <ndim>, then big-endian int32 dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">i", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root, folder: str, rng) -> dict:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 4),
    }
    for name, array in arrays.items():
        _write_idx(raw / name, array)
    return arrays


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_from_idx_files(tmp_path, name, folder):
    arrays = _write_mnist(tmp_path, folder, np.random.default_rng(0))
    ds = image_dataset(name, tmp_path)
    assert ds.x_train.shape == (6, 1, 28, 28)
    assert ds.x_test.shape == (4, 1, 28, 28)
    assert ds.y_train.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.y_test.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # standardised with the training statistics: undo it and recover the raw bytes exactly
    raw_train = torch.from_numpy(arrays["train-images-idx3-ubyte"]).double() / 255
    mean, std = raw_train.mean(), raw_train.std()
    assert float(ds.x_train.double().mean()) == pytest.approx(0.0, abs=1e-5)
    recovered = (ds.x_test.double()[:, 0] * std + mean) * 255
    np.testing.assert_allclose(recovered.numpy(), arrays["t10k-images-idx3-ubyte"], atol=1e-3)


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    _write_mnist(tmp_path, "MNIST", np.random.default_rng(0))
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:3])
    with pytest.raises(ValueError, match="corrupt"):
        image_dataset("mnist", tmp_path)


def _write_cifar(root, rng, per_batch: int = 3) -> dict:
    """CIFAR-10 python version: pickled dicts with b'data' (N, 3072) uint8 rows (R, G, B planes of 32x32) and
    b'labels' (a list), in root/cifar-10-batches-py/."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]:
        entry = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
        }
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f)
        batches[name] = entry
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10}, f)
    return batches


def test_cifar10_from_python_batches(tmp_path):
    batches = _write_cifar(tmp_path, np.random.default_rng(1))
    ds = image_dataset("cifar10", tmp_path, verify=False)
    assert ds.x_train.shape == (15, 3, 32, 32)
    assert ds.x_test.shape == (3, 3, 32, 32)
    assert ds.y_train.tolist() == functools.reduce(
        operator.iadd, (batches[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), []
    )
    # pixel (channel c, row r, column w) of image i is byte c*1024 + r*32 + w of its row
    raw = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)]).astype(np.float64) / 255
    planes = raw.reshape(15, 3, 1024)
    mean, std = planes.mean(axis=(0, 2)), planes.std(axis=(0, 2), ddof=1)
    i, c, r, w = 7, 2, 5, 9
    expected = (raw[i, c * 1024 + r * 32 + w] - mean[c]) / std[c]
    assert float(ds.x_train[i, c, r, w]) == pytest.approx(expected, abs=1e-5)


def test_cifar10_checksums_are_verified_by_default(tmp_path):
    _write_cifar(tmp_path, np.random.default_rng(1))
    with pytest.raises(ValueError, match="MD5"):
        image_dataset("cifar10", tmp_path)


def test_cifar10_corrupt_batch(tmp_path):
    _write_cifar(tmp_path, np.random.default_rng(1))
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="test_batch is corrupt"):
        image_dataset("cifar10", tmp_path, verify=False)


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashion_mnist"])
def test_missing_data_says_what_to_do(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="download=True"):
        image_dataset(name, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="download=True"):  # the folder exists but holds nothing
        image_dataset(name, tmp_path)


def test_dataset_is_frozen():
    ds = Dataset(
        "mnist1d",
        torch.zeros(2, 40),
        torch.zeros(2, dtype=torch.long),
        torch.zeros(1, 40),
        torch.zeros(1, dtype=torch.long),
        10,
    )
    with pytest.raises(AttributeError):
        ds.name = "x"
