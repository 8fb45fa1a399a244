"""Shared fixtures: data locations, a tiny trained model, a network guard, a CLI environment."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from advlab.data import ImageDataset, load_dataset
from advlab.defenses import TrainConfig, fit
from advlab.models import create_model

#: ``../shared/data/mnist`` relative to the project root (where the shared MNIST files live).
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
MNIST_GZ = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Settings of the tiny trained model (known to reach about 94% digits test accuracy).
TINY_CONFIG = TrainConfig(epochs=3, batch_size=64, lr=1e-2, seed=0)


def pytest_configure(config: pytest.Config) -> None:
    # The tests use tiny tensors: intra-op threads only add contention on a shared 2-core box
    # (a 16x10 cross-entropy took 12 ms with 2 threads under load, 5 us with 1).
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the canonical MNIST IDX ``.gz`` files; skips the test if absent."""
    if not all((SHARED_MNIST / f).is_file() for f in MNIST_GZ):
        pytest.skip(f"MNIST IDX files not found in {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to download fail the test loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="session")
def digits_train() -> ImageDataset:
    """scikit-learn's 8x8 digits, advlab's fixed training split (1,437 images)."""
    return load_dataset("digits", "train")


@pytest.fixture(scope="session")
def digits_test() -> ImageDataset:
    """scikit-learn's 8x8 digits, advlab's fixed test split (360 images)."""
    return load_dataset("digits", "test")


@pytest.fixture(scope="session")
def digits_settings(digits_train: ImageDataset) -> dict[str, object]:
    """Model settings for digits with the training set's normalization (as the CLI does)."""
    x = digits_train.images.float() / 255
    return {"in_shape": list(digits_train.shape), "num_classes": digits_train.num_classes,
            "mean": float(x.mean()), "std": float(x.std())}


@pytest.fixture(scope="session")
def trained_softmax(digits_train: ImageDataset, digits_settings: dict[str, object]) -> nn.Module:
    """Softmax regression trained on digits for 3 epochs (about 1 s). Treat as read-only."""
    torch.manual_seed(0)
    model = create_model("softmax", **digits_settings)
    fit(model, digits_train.images, digits_train.labels, TINY_CONFIG)
    return model.eval()


@pytest.fixture(scope="session")
def make_cli_env() -> Callable[[Path], dict[str, str]]:
    """``make_cli_env(tmp)``: environment for ``python -m advlab`` subprocesses.

    The cache is ``tmp/cache``; downloads go through a proxy on a closed local port, so they
    fail at once instead of reaching the network; ``COLUMNS`` keeps rich from wrapping the
    one-line error; ``ADVLAB_*`` variables of the caller are dropped.
    """
    return _cli_environment


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """:func:`make_cli_env` for this test's ``tmp_path``."""
    return _cli_environment(tmp_path)


def _cli_environment(tmp_path: Path) -> dict[str, str]:
    dropped = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ADVLAB_") and k.lower() not in dropped}
    closed = "http://127.0.0.1:9"
    env.update({
        "ADVLAB_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "1000",
        "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
        "no_proxy": "", "NO_PROXY": "",
    })
    return env


@pytest.fixture(autouse=True)
def _no_system_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the data they point at: a Debian copy of Fashion-MNIST on the machine
    (``advlab.data._locate.SYSTEM_DIRS``) must not turn a "not found" test into a load."""
    import advlab.data._locate as locate

    monkeypatch.setattr(locate, "SYSTEM_DIRS", {})
