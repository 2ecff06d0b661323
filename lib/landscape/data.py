"""Data sets as tensors in memory: MNIST-1D generated offline, and image data sets from a local folder.

Everything here is small enough to live in memory as a pair of tensors per split, so training indexes tensors
directly instead of going through a `DataLoader`.

References:
    S. Greydanus (2020), Scaling down deep learning (MNIST-1D);
    A. Krizhevsky (2009), Learning multiple layers of features from tiny images (CIFAR-10);
    Y. LeCun et al. (1998), MNIST; H. Xiao, K. Rasul, R. Vollgraf (2017), Fashion-MNIST.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pickle
import random
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "Dataset",
    "cache_root",
    "digits",
    "image_dataset",
    "load_dataset",
    "mnist1d",
    "mnist1d_signals",
]

log = logging.getLogger(__name__)

IMAGE_DATASETS = ("cifar10", "mnist", "fashion_mnist")
DATASETS = ("mnist1d", *IMAGE_DATASETS)

# Bump when the generated MNIST-1D arrays (or their on-disk cache format) change.
MNIST1D_CACHE_VERSION = 1


@dataclass(frozen=True)
class Dataset:
    """A classification data set held in memory.

    Attributes:
        name: the data set's name (one of `DATASETS`).
        x_train, y_train: training inputs `(N, *input_shape)` (float32) and integer labels `(N,)` (int64).
        x_test, y_test: the test split, same layout.
        num_classes: number of classes.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. `(40,)` for MNIST-1D or `(3, 32, 32)` for CIFAR-10."""
        return tuple(self.x_train.shape[1:])

    @property
    def train(self) -> tuple[Tensor, Tensor]:
        """The `(inputs, targets)` pair of the training split."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[Tensor, Tensor]:
        """The `(inputs, targets)` pair of the test split."""
        return self.x_test, self.y_test

    def subset(self, num_train: int | None = None, num_test: int | None = None) -> Dataset:
        """The first `num_train` training and `num_test` test samples (None keeps a split whole)."""
        for label, n in (("num_train", num_train), ("num_test", num_test)):
            if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
                raise ValueError(f"{label} must be a positive integer or None, got {n!r}")
        return Dataset(
            self.name,
            self.x_train[:num_train],
            self.y_train[:num_train],
            self.x_test[:num_test],
            self.y_test[:num_test],
            self.num_classes,
        )


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds cached data and stored runs.

    Resolution order: the `root` argument, then the environment variable `LANDSCAPE_CACHE`, then `results/` in
    the current directory (gitignored in this repository).
    """
    if root is not None:
        return Path(root)
    env = os.environ.get("LANDSCAPE_CACHE")
    return Path(env) if env else Path("results")


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write `payload` to `path` so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------------------------
# MNIST-1D


@contextlib.contextmanager
def isolated_global_rng():
    """Save Python's and NumPy's global random states and restore them on exit (mnist1d reseeds both)."""
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (the global state is what mnist1d overwrites)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)  # noqa: NPY002


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """The MNIST-1D arrays from the package's generator with its default arguments (seed 42)."""
    import mnist1d.data

    with isolated_global_rng():
        raw = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    return {
        "x_train": np.asarray(raw["x"], dtype=np.float32),
        "y_train": np.asarray(raw["y"], dtype=np.int64),
        "x_test": np.asarray(raw["x_test"], dtype=np.float32),
        "y_test": np.asarray(raw["y_test"], dtype=np.int64),
    }


def _cached_arrays(
    path: Path, keys: tuple[str, ...], generate, regenerate: bool = False
) -> dict[str, np.ndarray]:
    """The arrays `keys` of the .npz cache at `path`, or `generate()`'s, written atomically; an unreadable cache
    is rebuilt, never trusted."""
    if path.exists() and not regenerate:
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in keys}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            log.warning("cache %s is unreadable (%s); regenerating it", path, err)
    arrays = generate()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return arrays


_MEMORY: dict[tuple[str, str], Dataset] = {}


def mnist1d(root: str | os.PathLike | None = None, *, regenerate: bool = False) -> Dataset:
    """MNIST-1D (Greydanus 2020): 4000 training and 1000 test signals of length 40, 10 classes.

    Generated offline by `mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())` (the package's default
    arguments, seed 42; never its `get_dataset`, which downloads). The generator reseeds Python's and NumPy's
    global random generators; their states are saved and restored around it, so calling this function leaves
    the caller's random streams untouched. The arrays are cached in `<cache_root>/data/mnist1d_v1.npz` (written
    atomically) and, as tensors, in memory for the life of the process.

    Args:
        root: cache folder (default: `cache_root()`: `$LANDSCAPE_CACHE` or `results/`).
        regenerate: ignore the caches and generate the data again.

    Returns:
        A `Dataset` with float32 inputs `(N, 40)` and int64 labels.
    """
    path = cache_root(root) / "data" / f"mnist1d_v{MNIST1D_CACHE_VERSION}.npz"
    key = ("mnist1d", str(path.resolve()))
    if key in _MEMORY and not regenerate:
        return _MEMORY[key]
    arrays = _cached_arrays(path, ("x_train", "y_train", "x_test", "y_test"), _generate_mnist1d, regenerate)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    data = Dataset(
        "mnist1d", tensors["x_train"], tensors["y_train"], tensors["x_test"], tensors["y_test"], 10
    )
    _MEMORY[key] = data
    return data


def _generate_mnist1d_signals(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    args.num_samples, args.seed, args.train_split = num_samples, seed, 1.0
    with isolated_global_rng():
        raw = mnist1d.data.make_dataset(args)
    return {"x": np.asarray(raw["x"], dtype=np.float32), "y": np.asarray(raw["y"], dtype=np.int64)}


def mnist1d_signals(
    num_samples: int, seed: int, root: str | os.PathLike | None = None
) -> tuple[Tensor, Tensor]:
    """`num_samples` further MNIST-1D signals and labels from the package's generator with its default
    arguments but `num_samples` and `seed`: e.g. a test set large enough to rank gaps a point apart.

    The generator standardises its own output (mean 0, standard deviation 1 over all values it made), as it did
    for the default set: with thousands of signals the two standardisations agree to a fraction of a percent.
    Seed 42 is the default set's and is refused (its signals would repeat the training set's). Cached in
    `<cache_root>/data/mnist1d_signals_v1_<num_samples>_<seed>.npz` (atomic).

    Args:
        num_samples: signals to generate, a positive multiple of 10 (the generator makes as many of each class).
        seed: the generator's seed (not 42).
        root: cache folder (default `cache_root()`).

    Returns:
        ``(x, y)``: float32 `(num_samples, 40)` and int64 `(num_samples,)`.
    """
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, int)
        or num_samples < 10
        or num_samples % 10
    ):
        raise ValueError(
            f"num_samples must be a positive multiple of 10 (one tenth per class), got {num_samples!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if seed == 42:
        raise ValueError("seed 42 generates the default MNIST-1D set itself; pick another seed")
    path = cache_root(root) / "data" / f"mnist1d_signals_v1_{num_samples}_{seed}.npz"
    arrays = _cached_arrays(path, ("x", "y"), lambda: _generate_mnist1d_signals(num_samples, seed))
    return torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])


def digits(num_test: int = 597, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8 × 8 handwritten digits (`sklearn.datasets.load_digits`: 1,797 images of 10
    classes, shipped with the package, nothing downloaded) as flat 64-value inputs, a second real task beside
    MNIST-1D.

    Pixels (0–16) are standardised with the training split's mean and standard deviation; the split is a
    seeded permutation: `num_test` test images, the rest (1,200 by default) for training.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x, y = raw.data.astype(np.float32), raw.target.astype(np.int64)
    if isinstance(num_test, bool) or not isinstance(num_test, int) or not 0 < num_test < len(y):
        raise ValueError(f"num_test must be an integer in [1, {len(y) - 1}], got {num_test!r}")
    order = np.random.default_rng(seed).permutation(len(y))
    test, train = order[:num_test], order[num_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    return Dataset(
        "digits", as_tensor(x[train]), as_tensor(y[train]), as_tensor(x[test]), as_tensor(y[test]), 10
    )


# ----------------------------------------------------------------------------------------------------------------
# Image data sets from a local folder


def _missing(name: str, root: Path, expected: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name} not found under {root} (expected {expected}). Put the data set there in torchvision's layout, "
        f"or pass download=True to fetch it (needs internet), or point `root` at the folder that holds it."
    )


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: a pickled dict with b'data' (N, 3072) uint8 and b'labels' (N,)."""
    try:
        with path.open("rb") as f:
            entry = pickle.load(f, encoding="bytes")
        data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except Exception as err:
        raise ValueError(
            f"CIFAR-10 batch {path} is corrupt or not in the CIFAR-10 python format: {err}"
        ) from err
    if len(data) != len(labels):
        raise ValueError(f"CIFAR-10 batch {path} has {len(data)} images but {len(labels)} labels")
    return data, labels


def _load_cifar10(root: Path, download: bool, verify: bool) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    folder = root / CIFAR10.base_folder
    if download:
        CIFAR10(str(root), train=True, download=True)
    files = [*CIFAR10.train_list, *CIFAR10.test_list]
    missing = [name for name, _ in files if not (folder / name).is_file()]
    if missing:
        raise _missing("CIFAR-10", root, f"{folder}/ with {', '.join(name for name, _ in files)}")
    if verify:
        bad = [name for name, md5 in files if not check_integrity(str(folder / name), md5)]
        if bad:
            raise ValueError(
                f"CIFAR-10 files {bad} in {folder} fail their MD5 checksum (corrupt or not the official "
                "release); delete them and pass download=True, or pass verify=False to read them anyway"
            )
    train = [_read_cifar_batch(folder / name) for name, _ in CIFAR10.train_list]
    x_test, y_test = _read_cifar_batch(folder / CIFAR10.test_list[0][0])
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test


def _load_mnist_family(name: str, root: Path, download: bool) -> tuple[np.ndarray, ...]:
    from torchvision.datasets import MNIST, FashionMNIST

    cls = {"mnist": MNIST, "fashion_mnist": FashionMNIST}[name]
    raw = root / cls.__name__ / "raw"
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as err:
            if "not found" in str(err).lower():
                files = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, ..."
                raise _missing(cls.__name__, root, f"{raw}/ with {files}") from err
            raise
        except (AssertionError, ValueError, TypeError, IndexError) as err:
            raise ValueError(
                f"{cls.__name__} files in {raw} are corrupt or not in the IDX format: {err}"
            ) from err
        images = ds.data.numpy()[:, None]
        labels = ds.targets.numpy().astype(np.int64)
        if len(images) != len(labels):
            raise ValueError(f"{cls.__name__} in {raw}: {len(images)} images but {len(labels)} labels")
        splits += [images, labels]
    return tuple(splits)


def image_dataset(
    name: str, root: str | os.PathLike, *, download: bool = False, verify: bool = True
) -> Dataset:
    """CIFAR-10, MNIST or Fashion-MNIST from a local folder in torchvision's layout, as tensors in memory.

    Inputs are float32 `(N, C, H, W)`, scaled to [0, 1] and then standardised per channel with the mean and
    standard deviation of the training split. Nothing is downloaded unless `download=True`.

    Args:
        name: ``"cifar10"``, ``"mnist"`` or ``"fashion_mnist"``.
        root: the folder that holds (or, with `download=True`, will hold) the data set, as for torchvision:
            `root/cifar-10-batches-py/`, `root/MNIST/raw/`, `root/FashionMNIST/raw/`.
        download: fetch the data set through torchvision if it is missing (needs internet).
        verify: check the CIFAR-10 files against the official MD5 checksums.

    Raises:
        FileNotFoundError: the data set is not in `root` and `download` is False (the message says what to do).
        ValueError: unknown name, or files present but corrupt.
    """
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown image data set {name!r}; expected one of {IMAGE_DATASETS}")
    if root is None:
        raise ValueError(f"{name} needs a data folder: pass root=... (download=True fetches it there)")
    root = Path(root)
    if not root.is_dir() and not download:
        raise _missing(name, root, "an existing folder")
    if name == "cifar10":
        x_train, y_train, x_test, y_test = _load_cifar10(root, download, verify)
    else:
        x_train, y_train, x_test, y_test = _load_mnist_family(name, root, download)
    x_train = torch.from_numpy(x_train).float() / 255
    x_test = torch.from_numpy(x_test).float() / 255
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Dataset(
        name,
        (x_train - mean) / std,
        torch.from_numpy(y_train),
        (x_test - mean) / std,
        torch.from_numpy(y_test),
        10,
    )


def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = False) -> Dataset:
    """Any data set by name: ``"mnist1d"`` (generated; `root` is its cache folder) or an image data set
    (`root` is the folder that holds it; see `image_dataset`)."""
    if name == "mnist1d":
        return mnist1d(root)
    if name in IMAGE_DATASETS:
        return image_dataset(name, root, download=download)
    raise ValueError(f"unknown data set {name!r}; expected one of {DATASETS}")


def tensor_digest(*tensors: Tensor) -> str:
    """A short SHA-256 digest of tensors' bytes (to tell data sets apart in stored runs)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
