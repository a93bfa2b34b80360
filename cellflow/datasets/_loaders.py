"""Loaders for the real single-cell time courses, read from a data directory.

A data set ``name`` is the file ``<data_dir>/<file>``, where ``data_dir`` is the argument, else
the environment variable ``CELLFLOW_DATA_DIR``, else ``~/.cache/cellflow``. When the file is
absent and a URL is given (``url=`` or the registry's), it is downloaded there first; offline,
or with no URL, the error says where to put the file.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["load", "available", "DATA_DIR_ENV", "REGISTRY"]

DATA_DIR_ENV = "CELLFLOW_DATA_DIR"


@dataclass(frozen=True)
class _Entry:
    file: str
    time_key: str
    use_rep: str
    source: str
    url: str | None = None


REGISTRY: dict[str, _Entry] = {
    "eb": _Entry(
        "eb.h5ad",
        "time_point",
        "X_pca",
        "Embryoid body differentiation (Moon et al. 2019), the 100 PCs of eb_velocity_v5.npz used "
        "by "
        "TrajectoryNet and Tong et al. 2024, with RNA velocity in obsm['velocity_pca']",
    ),
    "cite": _Entry(
        "cite.h5ad",
        "day",
        "X_pca",
        "CITE-seq CD34+ HSPCs, NeurIPS 2022 Open Problems multimodal challenge, days 2/3/4/7, PCs "
        "as "
        "published with the LightSB code",
    ),
    "multi": _Entry(
        "multi.h5ad",
        "day",
        "X_pca",
        "Multiome CD34+ HSPCs, NeurIPS 2022 Open Problems multimodal challenge, days 2/3/4/7",
    ),
    "larry": _Entry(
        "weinreb_larry.h5ad",
        "day",
        "X_spring",
        "LARRY in vitro haematopoiesis (Weinreb et al. 2020), days 2/4/6, SPRING layout, as "
        "published "
        "in scDiffEq/LARRY-dataset",
    ),
}


def _data_dir(data_dir) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return Path.home() / ".cache" / "cellflow"


def available(data_dir: str | os.PathLike | None = None) -> dict[str, bool]:
    """Which registered data sets are present in the data directory."""
    root = _data_dir(data_dir)
    return {name: (root / e.file).exists() for name, e in REGISTRY.items()}


def load(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    backed: bool = False,
):
    """Read a registered time course (``"eb"``, ``"cite"``, ``"multi"``, ``"larry"``) as AnnData.

    Parameters
    ----------
    name
        Registered name; see ``cellflow.datasets.REGISTRY`` for the file, time key and source.
    data_dir
        Folder holding the file (default: ``$CELLFLOW_DATA_DIR``, else ``~/.cache/cellflow``).
    url
        Download from here when the file is absent (overrides the registry's URL).
    backed
        Open the file backed (read-only, on disk) instead of loading it into memory.

    Returns
    -------
    The AnnData; ``uns["cellflow_dataset"]`` records the name, ``time_key`` and ``use_rep``.
    """
    import anndata as ad

    if name not in REGISTRY:
        raise KeyError(f"unknown data set {name!r}; choose from {sorted(REGISTRY)}.")
    entry = REGISTRY[name]
    root = _data_dir(data_dir)
    path = root / entry.file
    if not path.exists():
        url = url or entry.url
        if url is None:
            raise FileNotFoundError(
                f"{entry.file} is not in {root}. Place it there, or pass data_dir= or set "
                f"${DATA_DIR_ENV} to the "
                f"folder that holds it, or pass url= to download it. Source: {entry.source}."
            )
        root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        try:
            urllib.request.urlretrieve(url, tmp)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise FileNotFoundError(
                f"{entry.file} is not in {root} and downloading {url} failed ({err}). "
                f"If you are offline, copy the file there or set ${DATA_DIR_ENV}."
            ) from err
        tmp.rename(path)
    adata = ad.read_h5ad(path, backed="r" if backed else None)
    if not backed:
        adata.uns["cellflow_dataset"] = {
            "name": name,
            "time_key": entry.time_key,
            "use_rep": entry.use_rep,
        }
    return adata
