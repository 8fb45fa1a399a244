"""Tests for folder:PATH, npz:PATH and imagenet-samples (advlab.data.folder/npz/imagenet_samples)."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from advlab.data import DatasetError, load_dataset


def _png(path: Path, value: int, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    arr[0, 0] = (value + 7) % 256
    Image.fromarray(arr).save(path)


def _tree(root: Path, classes: tuple[str, ...] = ("cat", "ant", "bee"), per: int = 3) -> Path:
    for ci, name in enumerate(classes):
        for j in range(per):
            _png(root / name / f"{j}.png", 40 * ci + j)
    return root


def test_folder_labels_follow_sorted_names(tmp_path):
    ds = load_dataset(f"folder:{_tree(tmp_path / 'imgs')}")
    assert tuple(ds.classes) == ("ant", "bee", "cat")
    assert ds.images.shape == (9, 3, 8, 8)
    for img, label in zip(ds.images, ds.labels, strict=True):
        # class folder "cat" was written with base value 0, "ant" 40, "bee" 80
        base = {"cat": 0, "ant": 40, "bee": 80}[ds.classes[int(label)]]
        assert base <= int(img[0, 1, 1]) < base + 3
    assert sorted(ds.labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_folder_limit_and_classes(tmp_path):
    root = _tree(tmp_path / "imgs")
    assert len(load_dataset(f"folder:{root}", limit=4)) == 4
    ds = load_dataset(f"folder:{root}", classes=[2])
    assert ds.labels.tolist() == [2, 2, 2]


def test_folder_split_subfolders(tmp_path):
    _tree(tmp_path / "imgs" / "train", per=2)
    _tree(tmp_path / "imgs" / "test", per=1)
    assert len(load_dataset(f"folder:{tmp_path / 'imgs'}", split="train")) == 6
    assert len(load_dataset(f"folder:{tmp_path / 'imgs'}", split="test")) == 3


def test_folder_image_size_resize_crop(tmp_path):
    _png(tmp_path / "imgs" / "a" / "0.png", 10, (8, 8))
    _png(tmp_path / "imgs" / "a" / "1.png", 20, (12, 10))
    _png(tmp_path / "imgs" / "b" / "0.png", 30, (6, 9))
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}", image_size=5)
    assert ds.images.shape == (3, 3, 5, 5)


def test_folder_different_sizes_need_image_size(tmp_path):
    _png(tmp_path / "imgs" / "a" / "0.png", 10, (8, 8))
    _png(tmp_path / "imgs" / "b" / "0.png", 20, (12, 10))
    with pytest.raises(DatasetError) as e:
        load_dataset(f"folder:{tmp_path / 'imgs'}")
    msg = str(e.value)
    assert "\n" not in msg and "image_size" in msg.replace("-", "_") and ".png" in msg


def _empty(root: Path) -> str:
    root.mkdir()
    return f"folder:{root}"


def _no_images(root: Path) -> str:
    _tree(root, ("a",), 1)
    (root / "b").mkdir()
    return f"folder:{root}"


def _garbage(root: Path) -> str:
    _tree(root, ("a",), 1)
    (root / "a" / "bad.png").write_bytes(b"not an image at all")
    return f"folder:{root}"


def _missing(root: Path) -> str:
    return f"folder:{root / 'nope'}"


@pytest.mark.parametrize("make, words", [
    (_empty, ["no class subfolders"]),
    (_no_images, ["has no images", "b"]),
    (_garbage, ["cannot read image", "bad.png"]),
    (_missing, ["not found", "nope"]),
])
def test_folder_errors_are_one_line(tmp_path, make, words):
    with pytest.raises(DatasetError) as e:
        load_dataset(make(tmp_path / "imgs"))
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


@pytest.mark.parametrize("content, words", [
    (None, ["classes file", "not found"]),
    ("", ["empty"]),
    ("a\na\nb\n", ["twice"]),
    ("a\n", ["not listed", "b"]),
])
def test_folder_bad_classes_file(tmp_path, content, words):
    root = _tree(tmp_path / "imgs", ("a", "b"), 1)
    cf = tmp_path / "classes.txt"
    if content is not None:
        cf.write_text(content)
    with pytest.raises(DatasetError) as e:
        load_dataset(f"folder:{root}", classes_file=cf)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


# ---- npz ----

def _src(n: int = 4) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 3, 5, 6), dtype=np.uint8)


def test_npz_nchw_uint8(tmp_path):
    x = _src()
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 1]))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert np.array_equal(ds.images.numpy(), x)
    assert ds.labels.tolist() == [0, 1, 2, 1]


def test_npz_nhwc_uint8(tmp_path):
    x = _src()
    np.savez(tmp_path / "d.npz", x=x.transpose(0, 2, 3, 1), y=np.array([0, 1, 2, 1]))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert np.array_equal(ds.images.numpy(), x)


def test_npz_float_round_trip(tmp_path):
    x = _src()
    np.savez(tmp_path / "d.npz", x=x.astype(np.float32) / 255.0, y=np.array([0, 1, 2, 1]))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert np.abs(ds.images.numpy().astype(int) - x.astype(int)).max() <= 1


class _Boom:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_npz_object_array_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    obj = np.empty(1, dtype=object)
    obj[0] = _Boom(str(marker))
    np.savez(tmp_path / "d.npz", x=obj, y=np.array([0]))
    # sanity: unpickling this really would create the marker
    pickle.loads(pickle.dumps(_Boom(str(tmp_path / "probe"))))
    assert (tmp_path / "probe").exists()
    with pytest.raises(DatasetError) as e:
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert "\n" not in str(e.value) and "pickle" in str(e.value)
    assert not marker.exists()


_Y = np.array([0, 1, 2, 1])


@pytest.mark.parametrize("x, y, words", [
    (_src().astype(np.int32), _Y, ["dtype"]),
    (np.full((4, 3, 5, 6), np.nan, np.float32), _Y, ["NaN"]),
    (np.full((4, 3, 5, 6), 2.0, np.float32), _Y, ["[0, 1]"]),
    (_src(), np.array([0, 1, 2]), ["disagree"]),
    (_src(), np.array([0, -1, 2, 1]), ["negative"]),
    (_src(), np.array([0.0, 1.5, 2.0, 1.0]), ["integers"]),
    (np.zeros((4, 3, 5, 3), np.uint8), _Y, ["NCHW or NHWC"]),
])
def test_npz_errors_are_one_line(tmp_path, x, y, words):
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DatasetError) as e:
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


# ---- imagenet-samples ----

def _has_foolbox_data() -> bool:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        return False
    return any((Path(p) / "data").is_dir() for p in spec.submodule_search_locations)


_NO_DATA = "foolbox data not installed (pip install 'advlab[imagenet]')"


@pytest.mark.skipif(not _has_foolbox_data(), reason=_NO_DATA)
def test_imagenet_samples():
    ds = load_dataset("imagenet-samples", split="test")
    assert ds.images.shape == (20, 3, 224, 224)
    assert int(ds.labels.min()) >= 0 and int(ds.labels.max()) < 1000
    assert len(ds.classes) == 1000
