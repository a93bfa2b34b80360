"""Image data for flow matching, as float32 tensors of shape (N, C, H, W) in [-1, 1].

- :func:`read_cifar10`: CIFAR-10 from its standard python batch files
  (``data_batch_1`` … ``data_batch_5``, ``test_batch``) in a folder; nothing is downloaded.
- :func:`read_image_folder`: a folder of PNG/JPEG files, one sub-folder per class (or none).
- :func:`load_images`: ``"digits"`` (embedded, from scikit-learn), ``"cifar10"`` (from a
  folder), a folder of images, or a ``.npy``/``.npz``/``.pt`` file.

Example
-------
>>> from cellflow.images import load_images
>>> x, y, classes = load_images("digits")
>>> tuple(x.shape), len(classes)
((1500, 1, 8, 8), 10)
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_cifar10", "read_image_folder", "load_images", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


# What CIFAR-10's python batches hold besides plain dicts, lists, bytes and numbers: NumPy arrays
# (rebuilt by these functions, under NumPy 1's and 2's module names) and py2 strings (_codecs).
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what a CIFAR-10 batch holds and refuses any other object,
    so that a crafted file in ``--data-dir`` cannot run code (plain ``pickle.load`` calls
    whatever function the file names)."""

    def find_class(self, module, name):
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR-10 python batch holds only "
            "dicts, lists, bytes, numbers and NumPy arrays. Is this file from "
            "cifar-10-python.tar.gz?"
        )


def _to_unit_range(x_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x_uint8.astype(np.float32) / 127.5 - 1.0)


def read_cifar10(directory: str | Path, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Read CIFAR-10's python batches from ``directory`` (the ``cifar-10-batches-py`` folder).

    Parameters
    ----------
    split
        ``"train"`` (``data_batch_1`` … ``data_batch_5``, 50,000 images) or ``"test"``
        (``test_batch``, 10,000).

    Returns
    -------
    images, labels
        float32 (N, 3, 32, 32) in [-1, 1], and int64 labels 0..9 (:data:`CIFAR10_CLASSES`).
    """
    directory = Path(directory)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    files = [directory / n for n in names if (directory / n).exists()]
    if not files:
        raise FileNotFoundError(
            f"no CIFAR-10 batch files ({', '.join(names)}) in {directory}. Download and unpack "
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and pass its "
            "cifar-10-batches-py folder."
        )
    xs, ys = [], []
    for f in files:
        with open(f, "rb") as fh:
            batch = _CifarUnpickler(fh, encoding="bytes").load()
        if not isinstance(batch, dict):
            raise ValueError(f"{f} is not a CIFAR-10 python batch (it does not hold a dict).")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if data is None or labels is None:
            raise ValueError(
                f"{f} is not a CIFAR-10 python batch (no 'data' and 'labels' entries)."
            )
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    return _to_unit_range(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def read_image_folder(
    path: str | Path, size: int | tuple[int, int] | None = None, mode: str | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read every image under ``path``; sub-folder names become the classes.

    Parameters
    ----------
    size
        Resize every image to this (height, width) (default: all images must share a size).
    mode
        PIL mode to convert to (``"RGB"``, ``"L"``; default: that of the first image).
    """
    from PIL import Image

    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"no image files ({', '.join(sorted(_IMAGE_SUFFIXES))}) under {path}."
        )
    classes = sorted({p.parent.relative_to(path).as_posix() for p in files})
    arrays = []
    for f in files:
        img = Image.open(f)
        mode = mode or ("RGB" if img.mode not in ("L", "RGB") else img.mode)
        img = img.convert(mode)
        if size is not None:
            h, w = (size, size) if isinstance(size, int) else size
            img = img.resize((w, h), Image.BILINEAR)
        a = np.asarray(img, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"images under {path} have different sizes {sorted(shapes)[:3]}...; pass size=(H, W)."
        )
    labels = torch.tensor([classes.index(f.parent.relative_to(path).as_posix()) for f in files])
    return _to_unit_range(np.stack(arrays)), labels, classes


def load_images(
    dataset: str | Path, *, data_dir: str | Path | None = None, split: str = "train"
) -> tuple[torch.Tensor, torch.Tensor | None, list[str]]:
    """Images, labels (or None) and class names of a data set by name or path.

    ``"cifar10"`` is read from ``data_dir`` or ``$CELLFLOW_DATA_DIR/cifar-10-batches-py``.
    """
    name = str(dataset)
    if name == "digits":
        from ..datasets import load_digits_images

        x, y = load_digits_images()
        if split == "test":  # the last 297 digits, the rest for training
            return x[1500:], y[1500:], [str(i) for i in range(10)]
        return (
            (x[:1500], y[:1500], [str(i) for i in range(10)])
            if split == "train"
            else (x, y, [str(i) for i in range(10)])
        )
    if name == "cifar10":
        base = data_dir or os.environ.get("CELLFLOW_DATA_DIR")
        if base is None:
            raise FileNotFoundError(
                "cifar10 needs data_dir= (or $CELLFLOW_DATA_DIR) holding cifar-10-batches-py/."
            )
        base = Path(base)
        folder = base / "cifar-10-batches-py" if (base / "cifar-10-batches-py").exists() else base
        x, y = read_cifar10(folder, split)
        return x, y, list(CIFAR10_CLASSES)
    path = Path(name)
    if path.is_dir():
        x, y, classes = read_image_folder(path)
        return x, (y if len(classes) > 1 else None), classes
    if path.suffix in (".npy", ".npz", ".pt"):
        if path.suffix == ".pt":
            obj = torch.load(path, weights_only=True)
            x, y = (
                (obj, None) if isinstance(obj, torch.Tensor) else (obj["images"], obj.get("labels"))
            )
        else:
            obj = np.load(path)
            x, y = (
                (obj, None)
                if isinstance(obj, np.ndarray)
                else (obj["images"], obj["labels"] if "labels" in obj else None)
            )
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if x.dim() != 4:
            raise ValueError(
                f"{path} holds an array of shape {tuple(x.shape)}; expected (N, C, H, W) scaled to "
                "[-1, 1]."
            )
        y = None if y is None else torch.as_tensor(np.asarray(y)).long()
        classes = [str(i) for i in range(int(y.max()) + 1)] if y is not None else []
        return x, y, classes
    raise FileNotFoundError(
        f"{name!r} is not 'digits', 'cifar10', an image folder, or a .npy/.npz/.pt file."
    )
