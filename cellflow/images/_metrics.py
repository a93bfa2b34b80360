r"""Scoring generated images.

- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two sets of
  features, :math:`\|\mu_a - \mu_b\|^2 + \operatorname{tr}\big(\Sigma_a + \Sigma_b -
  2(\Sigma_a\Sigma_b)^{1/2}\big)`,
  with any feature extractor (FID is this with Inception features).
- :class:`DigitsClassifier` and :func:`train_digits_classifier`: a small CNN trained on real
  8×8 digits; its accuracy on class-conditional samples (against its accuracy on real test
  digits) and the Fréchet distance in its 128-d feature space score a digits model.
- :func:`inception_fid`: FID through ``torch-fidelity`` (optional: ``pip install
  torch-fidelity``, which needs its Inception weights, downloaded once or cached).

Example
-------
>>> import numpy as np
>>> from cellflow.images import frechet_distance
>>> rng = np.random.default_rng(0)
>>> a = rng.normal(size=(20000, 2)) * [1.0, 2.0]
>>> round(frechet_distance(a, a + [3.0, 0.0]), 2)   # a shift of 3: ||mu_a - mu_b||^2 = 9
9.0
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["frechet_distance", "DigitsClassifier", "train_digits_classifier", "inception_fid"]


def frechet_distance(
    a, b, features: Callable[[Tensor], Tensor] | None = None, batch_size: int = 500
) -> float:
    """Fréchet distance between the feature distributions of ``a`` and ``b``.

    Parameters
    ----------
    a, b
        Feature matrices (n, d), or images when ``features`` is given.
    features
        A feature extractor applied in batches under ``torch.no_grad()`` (e.g.
        ``DigitsClassifier.features``); ``None``: ``a`` and ``b`` already are features.
    """
    if features is not None:
        a, b = (_features(features, x, batch_size) for x in (a, b))
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature widths differ: {a.shape[1]} vs {b.shape[1]}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    return float(
        ((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * _trace_sqrt_product(sa, sb)
    )


def _trace_sqrt_product(sa: np.ndarray, sb: np.ndarray) -> float:
    r""":math:`\operatorname{tr}(\Sigma_a\Sigma_b)^{1/2}` of two PSD matrices, as
    :math:`\operatorname{tr}(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}`, the sum of the square
    roots of
    the eigenvalues of a symmetric PSD matrix (the two products are similar): real and exact for
    singular covariances too (more features than samples), where ``scipy.linalg.sqrtm`` of the
    product warns and needs a regularising offset."""
    w, U = np.linalg.eigh(sa)
    half = (U * np.sqrt(np.clip(w, 0.0, None))) @ U.T
    m = half @ sb @ half
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())


def _features(fn, x, batch_size):
    x = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        return (
            torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
            .cpu()
            .numpy()
        )


class DigitsClassifier(nn.Module):
    """A small CNN for 8×8 digits in [-1, 1]: two 3×3 convolutions (32, 64), 2×2 max-pool, a
    128-unit feature layer, and 10 logits."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 16, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.reshape(-1, 1, 8, 8))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def accuracy(self, x: Tensor, y: Tensor) -> float:
        """Fraction of ``x`` classified as ``y``."""
        self.eval()
        return float(
            (self(torch.as_tensor(x, dtype=torch.float32)).argmax(1) == torch.as_tensor(y))
            .float()
            .mean()
        )


def train_digits_classifier(
    x: Tensor, y: Tensor, *, epochs: int = 40, seed: int = 0
) -> DigitsClassifier:
    """Train :class:`DigitsClassifier` on real digits (Adam, lr 1e-3, batch 64, light noise)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = DigitsClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y).long()
    clf.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            xb = x[idx] + 0.05 * torch.randn(x[idx].shape, generator=g)
            loss = nn.functional.cross_entropy(clf(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    return clf


def inception_fid(real: Tensor, fake: Tensor, **kwargs) -> float:
    """FID with Inception-v3 features through ``torch-fidelity`` (images in [-1, 1], 3 channels
    or 1, written to temporary PNG folders). Keyword arguments go to
    ``torch_fidelity.calculate_metrics``."""
    try:
        import torch_fidelity
    except ImportError as e:  # pragma: no cover - optional
        raise ImportError(
            "inception_fid needs torch-fidelity: pip install torch-fidelity (its Inception weights "
            "are downloaded on first use, or read from its cache)."
        ) from e
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for name, imgs in (("real", real), ("fake", fake)):
            d = Path(tmp) / name
            d.mkdir()
            arr = ((torch.as_tensor(imgs).clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()
            for i, im in enumerate(arr):
                im = np.repeat(im, 3, 0) if im.shape[0] == 1 else im
                Image.fromarray(im.transpose(1, 2, 0)).save(d / f"{i:06d}.png")
            dirs.append(str(d))
        m = torch_fidelity.calculate_metrics(
            input1=dirs[0], input2=dirs[1], fid=True, verbose=False, **kwargs
        )
    return float(m["frechet_inception_distance"])
