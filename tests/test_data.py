"""Tests for advlab.data: loaders, IDX reader, safe CIFAR unpickling, downloads (no network)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import pickletools
import shutil
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import advlab.data.cifar10 as cifar10_mod
import advlab.data.mnist as mnist_mod
from advlab.data import (
    DATASETS,
    DatasetError,
    DownloadError,
    ImageDataset,
    available_datasets,
    default_cache_dir,
    download_file,
    load_dataset,
    make_linear_blobs,
)
from advlab.data.cifar10 import RestrictedUnpickler, load_cifar10_batch, restricted_load
from advlab.data.idx import read_idx, read_idx_images, read_idx_labels

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"
SHARED_MNIST = SHARED_DATA / "mnist"
MNIST_TRAIN_IMAGES_RAW_MD5 = "6bbc9ace898e44ae57da46a324031adb"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]

needs_mnist = pytest.mark.skipif(
    not all((SHARED_MNIST / f).is_file() for pair in mnist_mod.MNIST_FILES.values() for f in pair),
    reason=f"MNIST IDX .gz files not found in {SHARED_MNIST} (see DESIGN.md, Data)",
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if any test reaches for the network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tests must not use the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Serialize a uint8 array as IDX (magic defaults to the type/ndim encoding)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist_split(
    directory: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True
) -> None:
    """Write an MNIST-style pair of IDX files for ``split`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    image_name, label_name = mnist_mod.MNIST_FILES[split]
    for name, array in ((image_name, images), (label_name, labels)):
        payload = idx_bytes(array)
        if gz:
            (directory / name).write_bytes(gzip.compress(payload))
        else:
            (directory / name.removesuffix(".gz")).write_bytes(payload)


def tiny_mnist(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class FakeWeb:
    """A stand-in for ``urllib.request.urlopen`` serving fixed responses per URL."""

    def __init__(self, routes: dict[str, bytes | BaseException]) -> None:
        self.routes = routes
        self.calls: list[str] = []

    def __call__(self, request: urllib.request.Request | str, timeout: float | None = None):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert timeout is not None and timeout <= 60, "downloads must use a short timeout"
        self.calls.append(url)
        response = self.routes.get(url, urllib.error.URLError("no such host"))
        if isinstance(response, BaseException):
            raise response
        return io.BytesIO(response)


class BrokenStream(io.BytesIO):
    """A response that dies half-way through."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() > 0:
            raise ConnectionResetError("connection reset by peer")
        return super().read(4)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".part"))


# --------------------------------------------------------------------------- registry


def test_available_datasets() -> None:
    assert available_datasets() == ["mnist", "fashion-mnist", "cifar10", "digits", "imagenet-samples"]
    assert tuple(available_datasets()) == DATASETS


def test_unknown_dataset_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("imagenet", cache_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "imagenet" in message and "\n" not in message
    for name in DATASETS:
        assert name in message


def test_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="split"):
        load_dataset("digits", split="validation", cache_dir=tmp_path)


def test_default_cache_dir_is_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "advlab"
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", "test", download=False)
    assert str(tmp_path / ".cache" / "advlab" / "mnist") in str(info.value)


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist_test() -> ImageDataset:
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST IDX .gz files not found in {SHARED_MNIST}")
    return load_dataset(
        "mnist", "test", data_dir=SHARED_MNIST, download=False, cache_dir="/nonexistent"
    )


@needs_mnist
def test_mnist_test_split(mnist_test: ImageDataset) -> None:
    ds = mnist_test
    assert len(ds) == 10000
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.shape == (10000,) and ds.labels.dtype == torch.int64
    assert ds.shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.classes == tuple("0123456789")
    assert (ds.name, ds.split) == ("mnist", "test")
    assert torch.bincount(ds.labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0


@needs_mnist
def test_mnist_train_split_is_bit_exact(tmp_path: Path) -> None:
    ds = load_dataset("mnist", "train", data_dir=SHARED_MNIST, download=False, cache_dir=tmp_path)
    assert ds.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(ds.labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    # Re-serialize what we loaded as IDX: its md5 must equal the published one of the
    # uncompressed train-images file, so the reader returns exactly the file's pixels.
    rebuilt = idx_bytes(ds.images.squeeze(1).numpy(), magic=0x00000803)
    assert md5_hex(rebuilt) == MNIST_TRAIN_IMAGES_RAW_MD5


@needs_mnist
def test_parent_dir_lookup_finds_subfolder(tmp_path: Path, mnist_test: ImageDataset) -> None:
    ds = load_dataset("mnist", "test", data_dir=SHARED_DATA, download=False, cache_dir=tmp_path)
    assert torch.equal(ds.images, mnist_test.images)
    assert torch.equal(ds.labels, mnist_test.labels)


@needs_mnist
def test_mnist_folder_is_not_read_as_fashion_mnist(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import advlab.data._locate as locate

    monkeypatch.setattr(locate, "SYSTEM_DIRS", {})  # no Debian copy to fall back on
    with pytest.raises(DatasetError, match="Fashion-MNIST"):
        load_dataset(
            "fashion-mnist", "test", data_dir=SHARED_MNIST, download=False, cache_dir=tmp_path
        )


@needs_mnist
def test_library_ignores_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ADVLAB_DATA", str(SHARED_DATA))
    with pytest.raises(DatasetError):
        load_dataset("mnist", "test", download=False, cache_dir=tmp_path)


@needs_mnist
def test_cache_dir_is_searched(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "mnist").mkdir(parents=True)
    for name in mnist_mod.MNIST_FILES["test"]:
        shutil.copy(SHARED_MNIST / name, cache / "mnist" / name)
    ds = load_dataset("mnist", "test", data_dir=tmp_path / "empty", download=False, cache_dir=cache)
    assert len(ds) == 10000


@needs_mnist
def test_truncated_real_file_raises(tmp_path: Path) -> None:
    for name in mnist_mod.MNIST_FILES["test"]:
        shutil.copy(SHARED_MNIST / name, tmp_path / name)
    target = tmp_path / "t10k-images-idx3-ubyte.gz"
    with open(target, "r+b") as handle:
        handle.truncate(target.stat().st_size // 2)
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False, cache_dir=tmp_path)


@needs_mnist
def test_load_dataset_subset_arguments(mnist_test: ImageDataset, tmp_path: Path) -> None:
    ds = load_dataset(
        "mnist",
        "test",
        data_dir=SHARED_DATA,
        download=False,
        cache_dir=tmp_path,
        limit=100,
        classes=[3, 7],
        relabel=True,
    )
    expected = mnist_test.subset(limit=100, classes=[3, 7], relabel=True)
    assert len(ds) == 100 and ds.classes == ("3", "7")
    assert torch.equal(ds.images, expected.images) and torch.equal(ds.labels, expected.labels)


# --------------------------------------------------------------------------- ImageDataset


@pytest.fixture
def small() -> ImageDataset:
    images, labels = tiny_mnist(40)
    return ImageDataset(
        images=torch.from_numpy(images).unsqueeze(1),
        labels=torch.from_numpy(labels).long(),
        classes=tuple("0123456789"),
        name="mnist",
        split="test",
    )


def test_subset_limit_keeps_first_examples(small: ImageDataset) -> None:
    sub = small.subset(limit=7)
    assert len(sub) == 7
    assert torch.equal(sub.images, small.images[:7]) and torch.equal(sub.labels, small.labels[:7])
    assert sub.images.data_ptr() != small.images.data_ptr()
    assert len(small.subset(limit=1000)) == len(small)


def test_subset_classes_relabel_3_vs_7(small: ImageDataset) -> None:
    sub = small.subset(classes=[3, 7], relabel=True)
    mask = (small.labels == 3) | (small.labels == 7)
    assert len(sub) == int(mask.sum())
    assert torch.equal(sub.images, small.images[mask])  # original order preserved
    assert torch.equal(sub.labels, (small.labels[mask] == 7).long())
    assert sub.classes == ("3", "7") and sub.num_classes == 2
    again = small.subset(classes=[3, 7], relabel=True)
    assert torch.equal(again.images, sub.images) and torch.equal(again.labels, sub.labels)
    # Without relabel the labels keep their meaning; order of `classes` maps to new labels.
    kept = small.subset(classes=[7, 3], limit=3)
    assert kept.classes == small.classes and set(kept.labels.tolist()) <= {3, 7}
    swapped = small.subset(classes=[7, 3], relabel=True)
    assert torch.equal(swapped.labels, (small.labels[mask] == 3).long())
    assert swapped.classes == ("7", "3")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": -5}, ValueError, "limit"),
        ({"limit": 2.5}, TypeError, "limit"),
        ({"limit": True}, TypeError, "limit"),
        ({"classes": [10]}, ValueError, "unknown class 10"),
        ({"classes": [-1]}, ValueError, "unknown class"),
        ({"classes": [3, 3]}, ValueError, "twice"),
        ({"classes": []}, ValueError, "at least one"),
        ({"classes": "37"}, TypeError, "sequence"),
        ({"relabel": True}, ValueError, "needs classes"),
    ],
)
def test_subset_validates(small: ImageDataset, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        small.subset(**kwargs)


def test_tensors_and_batches(small: ImageDataset) -> None:
    x, y = small.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(x * 255, small.images.float())
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    y[0] = 99  # returned labels are a copy
    assert int(small.labels[0]) != 99

    plain = list(small.batches(16))
    assert [len(b[1]) for b in plain] == [16, 16, 8]
    assert torch.equal(torch.cat([b[0] for b in plain]), small.tensors()[0])

    state = torch.get_rng_state()
    first = list(small.batches(16, shuffle=True, generator=torch.Generator().manual_seed(1)))
    second = list(small.batches(16, shuffle=True, generator=torch.Generator().manual_seed(1)))
    unseeded = list(small.batches(16, shuffle=True))
    assert torch.equal(torch.get_rng_state(), state), "global RNG must not be used"
    labels = torch.cat([b[1] for b in first])
    assert torch.equal(labels, torch.cat([b[1] for b in second]))
    assert sorted(labels.tolist()) == sorted(small.labels.tolist())
    assert sum(len(b[1]) for b in unseeded) == len(small)
    # each shuffled pair stays matched
    xs, ys = torch.cat([b[0] for b in first]), labels
    for xi, yi in zip(xs[:5], ys[:5], strict=True):
        match = (small.tensors()[0] == xi).flatten(1).all(1)
        assert int(small.labels[match][0]) == int(yi)
    with pytest.raises(ValueError, match="batch_size"):
        next(iter(small.batches(0)))


def test_image_dataset_validates() -> None:
    good_images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    good_labels = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(good_images.float(), good_labels, ("a", "b"), "synthetic", "train")
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(good_images, good_labels.int(), ("a", "b"), "synthetic", "train")
    with pytest.raises(ValueError, match="labels must lie"):
        ImageDataset(good_images, torch.tensor([0, 2]), ("a", "b"), "synthetic", "train")
    with pytest.raises(ValueError, match="disagree"):
        ImageDataset(good_images, torch.tensor([0]), ("a", "b"), "synthetic", "train")
    with pytest.raises(ValueError, match="split"):
        ImageDataset(good_images, good_labels, ("a", "b"), "synthetic", "valid")
    assert "n=2" in repr(ImageDataset(good_images, good_labels, ("a", "b"), "synthetic", "train"))


def test_make_linear_blobs_is_reproducible() -> None:
    state = torch.get_rng_state()
    a = make_linear_blobs(
        30, shape=(1, 6, 6), num_classes=3, generator=torch.Generator().manual_seed(4)
    )
    b = make_linear_blobs(
        30, shape=(1, 6, 6), num_classes=3, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.shape == (1, 6, 6) and a.num_classes == 3 and a.name == "synthetic"
    assert torch.bincount(a.labels).tolist() == [10, 10, 10]
    # nearly linearly separable: nearest class mean classifies (almost) everything
    x, y = a.tensors()
    means = torch.stack([x[y == k].mean(0) for k in range(3)])
    pred = torch.cdist(x.flatten(1), means.flatten(1)).argmin(1)
    assert (pred == y).float().mean() > 0.9
    with pytest.raises(ValueError):
        make_linear_blobs(10, num_classes=1)


# --------------------------------------------------------------------------- IDX reader


def test_idx_roundtrip_gz_and_plain(tmp_path: Path) -> None:
    images, labels = tiny_mnist(5)
    write_mnist_split(tmp_path / "gz", "train", images, labels)
    write_mnist_split(tmp_path / "raw", "train", images, labels, gz=False)
    assert np.array_equal(read_idx_images(tmp_path / "gz" / "train-images-idx3-ubyte.gz"), images)
    assert np.array_equal(read_idx_labels(tmp_path / "raw" / "train-labels-idx1-ubyte"), labels)
    ds = load_dataset(
        "mnist", "train", data_dir=tmp_path / "raw", download=False, cache_dir=tmp_path
    )
    assert np.array_equal(ds.images.squeeze(1).numpy(), images)
    assert ds.labels.tolist() == labels.tolist()


def test_idx_bad_magic(tmp_path: Path) -> None:
    images, labels = tiny_mnist(3)
    write_mnist_split(tmp_path, "test", images, labels)
    # put a labels file under the images name
    shutil.copy(tmp_path / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz.*magic"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False, cache_dir=tmp_path)
    (tmp_path / "junk").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(DatasetError, match="magic"):
        read_idx(tmp_path / "junk")


@pytest.mark.parametrize("cut", ["payload", "gzip-stream", "header", "not-gzip", "extra"])
def test_idx_truncated_or_corrupt(tmp_path: Path, cut: str) -> None:
    images, _ = tiny_mnist(4)
    payload = idx_bytes(images)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if cut == "payload":  # valid gzip, short IDX payload
        path.write_bytes(gzip.compress(payload[:-10]))
    elif cut == "gzip-stream":  # gzip stream cut off
        path.write_bytes(gzip.compress(payload)[:-30])
    elif cut == "header":
        path.write_bytes(gzip.compress(payload[:10]))
    elif cut == "not-gzip":
        path.write_bytes(b"this is not gzip at all" * 10)
    else:  # trailing garbage after the payload
        path.write_bytes(gzip.compress(payload + b"\x00"))
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz"):
        read_idx_images(path)


def test_idx_count_mismatch(tmp_path: Path) -> None:
    images, labels = tiny_mnist(5)
    write_mnist_split(tmp_path, "test", images, labels[:4])
    with pytest.raises(DatasetError, match="5 images but .* 4 labels"):
        load_dataset("mnist", "test", data_dir=tmp_path, download=False, cache_dir=tmp_path)


def test_missing_without_download_names_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(
            "mnist", "test", data_dir=tmp_path / "nowhere", download=False, cache_dir=tmp_path
        )
    message = str(info.value)
    assert "\n" not in message
    assert "t10k-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "nowhere") in message and "download=False" in message


# --------------------------------------------------------------------------- downloads


def test_download_file_tries_mirrors_and_checks_md5(tmp_path: Path, monkeypatch) -> None:
    good, bad = b"the real file" * 100, b"an impostor" * 100
    calls: list[str] = []

    def urlopen(request: urllib.request.Request, timeout: float | None = None) -> io.BytesIO:
        url = request.full_url
        calls.append(url)
        assert timeout is not None
        if url.startswith("https://a.test"):
            raise urllib.error.URLError("timed out")
        if url.startswith("https://b.test"):
            return io.BytesIO(bad)  # wrong md5
        if url.startswith("https://c.test"):
            return BrokenStream(good)  # dies mid-download
        return io.BytesIO(good)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    mirrors = ["https://a.test/", "https://b.test", "https://c.test/", "https://d.test/"]
    path = download_file("x.bin", mirrors, md5_hex(good), tmp_path / "dl", timeout=5)
    assert path == tmp_path / "dl" / "x.bin" and path.read_bytes() == good
    assert calls == [m.rstrip("/") + "/x.bin" for m in mirrors]
    assert leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path / "dl")) == ["x.bin"]
    # a verified file is reused without touching the network
    calls.clear()
    assert download_file("x.bin", mirrors, md5_hex(good), tmp_path / "dl") == path
    assert calls == []


def test_download_file_all_mirrors_fail(tmp_path: Path, monkeypatch) -> None:
    web = FakeWeb({"https://b.test/x.bin": b"wrong"})
    monkeypatch.setattr(urllib.request, "urlopen", web)
    with pytest.raises(DownloadError) as info:
        download_file("x.bin", ["https://a.test/", "https://b.test/"], "0" * 32, tmp_path)
    message = str(info.value)
    assert "no such host" in message and "md5 mismatch" in message and "\n" not in message
    assert os.listdir(tmp_path) == []


def test_mnist_download_into_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = tiny_mnist(8)
    files = {
        "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(images)),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labels)),
    }
    mirrors = ("https://a.test/mnist/", "https://b.test/mnist/")
    routes: dict[str, bytes | BaseException] = {}
    for name, data in files.items():
        monkeypatch.setitem(mnist_mod.MNIST_MD5, name, md5_hex(data))
        routes[mirrors[0] + name] = data[:-1] + b"!"  # corrupted copy on the first mirror
        routes[mirrors[1] + name] = data
    web = FakeWeb(routes)
    monkeypatch.setattr(mnist_mod, "MNIST_MIRRORS", mirrors)
    monkeypatch.setattr(urllib.request, "urlopen", web)

    cache = tmp_path / "cache"
    ds = load_dataset("mnist", "test", data_dir=tmp_path / "empty", cache_dir=cache)
    assert np.array_equal(ds.images.squeeze(1).numpy(), images)
    assert ds.labels.tolist() == labels.tolist()
    assert sorted(os.listdir(cache / "mnist")) == sorted(files)
    assert leftovers(tmp_path) == []
    for name, data in files.items():
        assert (cache / "mnist" / name).read_bytes() == data
    assert len(web.calls) == 4

    # second time: found in the cache, no download
    web.calls.clear()
    again = load_dataset("mnist", "test", cache_dir=cache)
    assert torch.equal(again.images, ds.images) and web.calls == []


def test_mnist_download_failure_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", FakeWeb({}))
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", "train", data_dir=tmp_path / "data", cache_dir=tmp_path / "c")
    message = str(info.value)
    assert "Fashion-MNIST" in message and "download failed" in message and "\n" not in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert "fashion-mnist.s3-website" in message
    assert not (tmp_path / "c" / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists()
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- digits


def test_digits_split() -> None:
    train = load_dataset("digits", "train")
    test = load_dataset("digits", "test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255
    allowed = {round(v * 255 / 16) for v in range(17)}
    assert set(torch.unique(torch.cat([train.images, test.images])).tolist()) <= allowed
    test_counts = torch.bincount(test.labels, minlength=10)
    assert int(test_counts.min()) >= 35 and int(test_counts.max()) <= 37  # stratified
    full = torch.bincount(torch.cat([train.labels, test.labels]), minlength=10)
    assert int(full.sum()) == 1797
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    assert load_dataset("digits", "test", limit=10, classes=[0, 1], relabel=True).num_classes == 2


# --------------------------------------------------------------------------- CIFAR-10

CIFAR_NAMES = [n.encode() for n in cifar10_mod.CIFAR10_CLASSES]


def cifar_batch(n: int, seed: int) -> dict[bytes, object]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"img{i}.png".encode() for i in range(n)],
    }


def dump_like_python2(obj: object) -> bytes:
    """Pickle as CIFAR's Python 2 files are: protocol 2, ``str`` opcodes for text and bytes
    (BINSTRING, read back as bytes under ``encoding='bytes'``), ``numpy.core`` module path."""
    data = pickle.dumps(obj, protocol=3)
    ops = list(pickletools.genops(data))
    out = bytearray()
    for (op, arg, pos), nxt in zip(ops, [*ops[1:], None], strict=True):
        end = nxt[2] if nxt is not None else len(data)
        if op.name == "PROTO":
            out += b"\x80\x02"
        elif op.name in ("BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"):
            raw = arg.encode("latin-1") if isinstance(arg, str) else arg
            out += (
                b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<i", len(raw))
            )
            out += raw
        elif op.name == "GLOBAL":
            out += data[pos:end].replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        else:
            out += data[pos:end]
    return bytes(out)


def write_fake_cifar(directory: Path, n: int = 3) -> dict[str, dict[bytes, object]]:
    directory.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(n, 99)
    for i, (name, batch) in enumerate(batches.items()):
        data = dump_like_python2(batch) if i % 2 else pickle.dumps(batch, protocol=3)
        (directory / name).write_bytes(data)
    meta = {b"label_names": CIFAR_NAMES, b"num_cases_per_batch": n, b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(dump_like_python2(meta))
    return batches


def test_cifar_loads_fake_batches(tmp_path: Path) -> None:
    batches = write_fake_cifar(tmp_path / "data" / "cifar10" / "cifar-10-batches-py")
    train = load_dataset(
        "cifar10", "train", data_dir=tmp_path / "data", download=False, cache_dir=tmp_path
    )
    test = load_dataset(
        "cifar10", "test", data_dir=tmp_path / "data", download=False, cache_dir=tmp_path
    )
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == cifar10_mod.CIFAR10_CLASSES
    row = batches["data_batch_2"][b"data"][1]  # type: ignore[index]
    img = train.images[3 + 1].numpy()
    assert img[0, 0, 0] == row[0] and img[1, 0, 0] == row[1024] and img[2, 31, 31] == row[3071]
    assert img[0, 1, 2] == row[34]
    assert test.labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar_tarball_is_extracted_safely(tmp_path: Path) -> None:
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_fake_cifar(src)
    tar_path = tmp_path / "dl" / "cifar-10-python.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(src, arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../evil.txt")
        evil.size = 4
        archive.addfile(evil, io.BytesIO(b"evil"))
        link = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", "test", data_dir=tmp_path / "dl", download=False, cache_dir=cache)
    assert len(ds) == 3
    out = cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(os.listdir(out)) == sorted(
        ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]
    )
    assert not (tmp_path / "evil.txt").exists() and not (cache / "evil.txt").exists()
    assert not (cache / "cifar10" / "evil.txt").exists()
    # next time the extracted cache is used directly
    tar_path.unlink()
    assert len(load_dataset("cifar10", "train", download=False, cache_dir=cache)) == 15


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_rejects_malicious_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(marker)}, protocol=2))
    with pytest.raises(DatasetError, match=r"test_batch.*refusing to load global"):
        load_dataset("cifar10", "test", data_dir=tmp_path, download=False, cache_dir=tmp_path)
    assert not marker.exists()
    with pytest.raises(DatasetError, match="refusing"):
        load_cifar10_batch(folder / "test_batch")


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        b"cos\nsystem\n(S'true'\ntR.",
        b"csubprocess\nPopen\n(S'true'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",
        b"cbuiltins\ngetattr\n(cbuiltins\nint\nS'mro'\ntR.",
    ],
)
def test_restricted_unpickler_refuses_globals(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        restricted_load(payload)


def test_restricted_unpickler_allows_arrays() -> None:
    obj = {b"data": np.arange(6, dtype=np.uint8).reshape(2, 3), b"labels": [1, 2], b"s": "x"}
    loaded = restricted_load(dump_like_python2(obj))
    assert np.array_equal(loaded[b"data"], obj[b"data"]) and loaded[b"labels"] == [1, 2]
    assert isinstance(RestrictedUnpickler(io.BytesIO(pickle.dumps([1]))).load(), list)


def test_cifar_download_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError, match="cifar-10-python.tar.gz"):
        load_dataset(
            "cifar10", "test", data_dir=tmp_path / "none", download=False, cache_dir=tmp_path
        )
    src = tmp_path / "src" / "cifar-10-batches-py"
    write_fake_cifar(src)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(src, arcname="cifar-10-batches-py")
    tarball = buffer.getvalue()
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    web = FakeWeb({url: tarball})
    monkeypatch.setattr(urllib.request, "urlopen", web)
    monkeypatch.setattr(cifar10_mod, "CIFAR10_MD5", md5_hex(tarball))
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", "train", data_dir=tmp_path / "none", cache_dir=cache)
    assert len(ds) == 15 and web.calls == [url]
    assert (cache / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == tarball
    assert leftovers(tmp_path) == []


def test_system_folder_is_searched_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import advlab.data._locate as locate
    from advlab.data._locate import search_dirs

    SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}
    monkeypatch.setattr(locate, "SYSTEM_DIRS", SYSTEM_DIRS)
    dirs = search_dirs("fashion-mnist", tmp_path / "mine", tmp_path / "cache")
    assert dirs[0] == tmp_path / "mine"
    assert dirs[-1] == SYSTEM_DIRS["fashion-mnist"][-1] == Path("/usr/share/datasets/fashion-mnist")
    assert all(d not in SYSTEM_DIRS.get("fashion-mnist", ()) for d in search_dirs("mnist", None, tmp_path))


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_found_without_data_dir(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import advlab.data._locate as locate

    debian = Path("/usr/share/datasets/fashion-mnist")
    monkeypatch.setattr(locate, "SYSTEM_DIRS", {"fashion-mnist": (debian,)})
    ds = load_dataset("fashion-mnist", "test", download=False, cache_dir=tmp_path)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.classes[0] == "T-shirt/top"
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
