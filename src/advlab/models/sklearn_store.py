"""Safe persistence of the fitted scikit-learn wrappers: safetensors arrays + JSON.

Nothing is unpickled. The fitted arrays (coefficients, tree nodes, kNN training points)
are stored as safetensors tensors and the rest (model name, settings, scikit-learn version,
scalar attributes) as JSON in the safetensors metadata. Loading rebuilds a fresh wrapper
from its settings and sets the arrays back after checking their shapes, so a crafted file
can at worst be refused (``ValueError``), never run code. A file written by another
scikit-learn version is refused too (the tree layout is scikit-learn's own).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advlab.models.sklearn import SKLEARN_MODELS, SklearnClassifier, SklearnDecisionTree, SklearnKNN

__all__ = ["sklearn_to_bytes", "load_sklearn_model", "FORMAT"]

FORMAT = "advlab-sklearn-1"
_NAMES = {cls.__name__: key for key, cls in SKLEARN_MODELS.items()}
_LINEAR = ("coef_", "intercept_", "classes_", "n_iter_")


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def sklearn_to_bytes(model: SklearnClassifier) -> bytes:
    """The fitted ``model`` as safetensors bytes (arrays) with JSON metadata."""
    from safetensors.numpy import save

    if not hasattr(model, "estimator_"):
        raise ValueError(f"{type(model).__name__} is not fitted yet; call .fit(x, y) first")
    est = model.estimator_
    arrays: dict[str, np.ndarray] = {"classes_": np.asarray(est.classes_, dtype=np.int64)}
    info: dict[str, Any] = {"format": FORMAT, "sklearn": _sklearn_version(),
                            "settings": model.settings(), "in_shape": list(model.in_shape_),
                            "num_classes": model.num_classes_}
    if isinstance(model, SklearnDecisionTree):
        _, (n_features, n_classes, n_outputs), st = est.tree_.__reduce__()
        info["tree"] = {"n_features": int(n_features), "n_classes": [int(c) for c in n_classes],
                        "n_outputs": int(n_outputs), "max_depth": int(st["max_depth"]),
                        "fields": list(st["nodes"].dtype.names),
                        "max_features": int(est.max_features_)}
        for name in st["nodes"].dtype.names:
            arrays[f"nodes.{name}"] = np.ascontiguousarray(st["nodes"][name])
        arrays["values"] = np.ascontiguousarray(st["values"])
    elif isinstance(model, SklearnKNN):
        arrays["fit_x"] = np.ascontiguousarray(est._fit_X)
        arrays["fit_y"] = np.asarray(est.classes_[est._y], dtype=np.int64)
        arrays["points_"] = model.points_.numpy()
        arrays["point_labels_"] = model.point_labels_.numpy()
    else:
        arrays.update({k: np.ascontiguousarray(getattr(est, k)) for k in _LINEAR})
    return bytes(save(arrays, metadata={"advlab": json.dumps(info, sort_keys=True)}))


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            meta = json.loads((f.metadata() or {})["advlab"])
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # noqa: BLE001 - any parse failure means: not our file
        raise ValueError(f"{path} is not an advlab scikit-learn model file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an advlab scikit-learn model file")
    return arrays, meta


def _need(arrays: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    a = arrays.get(key)
    if a is None or a.ndim != len(shape) or any(
            s is not None and s != d for s, d in zip(shape, a.shape, strict=True)):
        raise ValueError(f"array {key!r} is missing or has the wrong shape")
    return a


def _restore_tree(est: Any, arrays: dict[str, np.ndarray], t: dict[str, Any], k: int) -> None:
    from sklearn.tree._tree import NODE_DTYPE, Tree

    if list(t["fields"]) != list(NODE_DTYPE.names):
        raise ValueError("tree node layout differs from this scikit-learn's")
    nf = int(t["n_features"])
    n = int(arrays["nodes.left_child"].shape[0]) if "nodes.left_child" in arrays else 0
    nodes = np.zeros(n, dtype=NODE_DTYPE)
    for name in NODE_DTYPE.names:
        nodes[name] = _need(arrays, f"nodes.{name}", (n,))
    left, right, feat = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == -1
    idx = np.arange(n)
    # children come after their parent (no cycles) and inside the array; leaves have none
    if n < 1 or not (np.all(right[leaf] == -1) and np.all((left[~leaf] > idx[~leaf]) & (left[~leaf] < n))
                     and np.all((right[~leaf] > idx[~leaf]) & (right[~leaf] < n))
                     and np.all((feat[~leaf] >= 0) & (feat[~leaf] < nf))):
        raise ValueError("tree nodes are inconsistent")
    values = np.ascontiguousarray(_need(arrays, "values", (n, 1, k)), dtype=np.float64)
    if nf != est.n_features_in_ or list(t["n_classes"]) != [k] or int(t["n_outputs"]) != 1:
        raise ValueError("tree header does not match the model")
    tree = Tree(nf, np.array([k], dtype=np.intp), 1)
    tree.__setstate__({"max_depth": int(t["max_depth"]), "node_count": n, "nodes": nodes,
                       "values": values})
    est.tree_, est.n_classes_, est.n_outputs_ = tree, k, 1
    est.max_features_ = int(t["max_features"])


def load_sklearn_model(path: str | Path, expect_settings: dict[str, Any] | None = None) -> SklearnClassifier:
    """Rebuild a wrapper saved by :func:`sklearn_to_bytes`.

    Args:
        path: the file.
        expect_settings: if given, the file's settings must equal these.

    Raises:
        ValueError: not such a file, other settings or scikit-learn version, bad arrays.
    """
    path = Path(path)
    arrays, meta = _read(path)
    try:
        return _rebuild(arrays, meta, expect_settings)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"{path}: cannot rebuild the scikit-learn model ({e})") from None


def _rebuild(arrays: dict[str, np.ndarray], meta: dict[str, Any],
             expect: dict[str, Any] | None) -> SklearnClassifier:
    from advlab.models.sklearn import create_sklearn_model

    if meta["sklearn"] != _sklearn_version():
        raise ValueError(f"written by scikit-learn {meta['sklearn']}, this is {_sklearn_version()}")
    settings = dict(meta["settings"])
    if expect is not None and settings != expect:
        raise ValueError("settings differ from the requested model")
    name = _NAMES[settings.pop("model")]
    model = create_sklearn_model(name, **settings)
    in_shape = tuple(int(s) for s in meta["in_shape"])
    k, d = int(meta["num_classes"]), int(np.prod(in_shape))
    if not 2 <= k <= 100000 or any(s < 1 for s in in_shape):
        raise ValueError("bad shape or class count")
    classes = _need(arrays, "classes_", (k,))
    if list(classes) != list(range(k)):
        raise ValueError("classes must be 0..K-1")
    est = model._make_estimator()
    if isinstance(model, SklearnKNN):
        x = _need(arrays, "fit_x", (None, d))
        est.fit(x, _need(arrays, "fit_y", (x.shape[0],)))
        model.points_ = torch.from_numpy(_need(arrays, "points_", (None, *in_shape)).copy())
        m = model.points_.shape[0]
        model.point_labels_ = torch.from_numpy(_need(arrays, "point_labels_", (m,)).copy())
    else:
        est.classes_, est.n_features_in_ = classes, d
        if isinstance(model, SklearnDecisionTree):
            _restore_tree(est, arrays, meta["tree"], k)
        else:
            rows = 1 if k == 2 else k
            est.coef_ = _need(arrays, "coef_", (rows, d))
            est.intercept_ = _need(arrays, "intercept_", (rows,))
            est.n_iter_ = arrays.get("n_iter_")
    model.estimator_, model.in_shape_, model.num_classes_ = est, in_shape, k
    return model
