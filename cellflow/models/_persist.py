"""Saving a `CellFlow` to a folder and loading it against an AnnData.

A saved model is ``config.json`` (settings, times, scaling, and a fingerprint of the AnnData
it was trained on) beside ``model.pt`` (a state dict; ``score.pt``, ``geodesic.pt`` and
``growth.pt`` for SB, OT-MFM and growth-aware models), read back with ``torch.load(..., weights_only=True)``. Loading against
another AnnData is refused with what differs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .._defaults import GROWTH_TAU
from .._io import IncompleteModelError, load_weights, read_model_config, write_json
from ..adata._read import Standardizer, dense_columns, get_times
from ..adata._store import has_representation, representation_shape
from ..flow.geodesics import GeodesicInterpolant

__all__ = [
    "fingerprint",
    "fingerprint_differences",
    "mismatch_error",
    "representation_digest",
    "write_model_files",
    "load_model",
]


_DIGEST_ROWS, _DIGEST_BLOCK = 256, 32  # rows of X that its digest reads, and rows per read


def representation_digest(adata, use_rep: str, n_cols: int) -> str:
    """SHA-1 of the values the model reads: the leading ``n_cols`` columns of ``obsm[use_rep]``
    as float64, or, for ``use_rep="X"``, of 256 evenly spaced rows of them (read 32 at a time) (so that a digest of
    a large, sparse or backed X costs one small read). A sign flip, a rerun PCA or an in-place
    ``sc.pp.scale`` changes it."""
    from ..adata._store import RowSource

    if use_rep == "X":
        return source_digest(RowSource.from_adata(adata, "X", n_cols))
    values = dense_columns(adata.obsm[use_rep], n_cols)
    return hashlib.sha1(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


def source_digest(source) -> str:
    """:func:`representation_digest` of a :class:`cellflow.adata._store.RowSource` (``adata.X``)."""
    n = source.shape[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, _DIGEST_ROWS)).round().astype(np.int64))
    h = hashlib.sha1()
    for start in range(0, len(rows), _DIGEST_BLOCK):
        h.update(
            np.ascontiguousarray(
                source.rows(rows[start : start + _DIGEST_BLOCK]), dtype=np.float64
            ).tobytes()
        )
    return h.hexdigest()


def times_digest(t: np.ndarray) -> str:
    """SHA-1 of each cell's time (float64, in ``obs`` order)."""
    return hashlib.sha1(np.ascontiguousarray(t, dtype=np.float64).tobytes()).hexdigest()


def growth_digest(adata, growth_key: str) -> str:
    """SHA-1 of each cell's growth prior ``obs[growth_key]`` (float64, in ``obs`` order)."""
    values = np.asarray(adata.obs[growth_key], dtype=np.float64)
    return hashlib.sha1(np.ascontiguousarray(values).tobytes()).hexdigest()


def fingerprint(
    adata,
    use_rep: str,
    time_key: str | None = None,
    n_cols: int | None = None,
    growth_key: str | None = None,
) -> dict:
    """What identifies the AnnData a model was trained on: the number of cells, a hash of their
    names, the shape of the representation, and (given ``time_key``, ``n_cols`` and
    ``growth_key``) digests of the representation's values (:func:`representation_digest`), of
    the cells' times and of their growth prior."""
    names = hashlib.sha1("\n".join(map(str, adata.obs_names)).encode()).hexdigest()
    fp = {
        "n_obs": int(adata.n_obs),
        "obs_names_sha1": names,
        "rep_shape": list(representation_shape(adata, use_rep)),
    }
    if n_cols is not None:
        fp["n_cols"] = int(n_cols)
        fp["rep_sha1"] = representation_digest(adata, use_rep, n_cols)
    if time_key is not None:
        t, times = get_times(adata, time_key, min_points=1)
        fp["times"] = times.tolist()
        fp["times_sha1"] = times_digest(t)
    if growth_key is not None:
        fp["growth_key"] = growth_key
        fp["growth_sha1"] = growth_digest(adata, growth_key)
    return fp


def fingerprint_differences(
    adata, use_rep: str, saved: dict, time_key: str | None = None
) -> list[str]:
    """What differs between ``adata`` and a saved fingerprint (empty when it is the same data).

    Fingerprints saved before the value digests existed are compared on what they hold."""
    rep = "X" if use_rep == "X" else f"obsm[{use_rep!r}]"
    fp = fingerprint(adata, use_rep)
    out = [
        f"{label}: saved {saved[k]}, given {fp[k]}"
        for k, label in [
            ("n_obs", "number of cells"),
            ("obs_names_sha1", "cell names (obs_names)"),
            ("rep_shape", f"shape of {rep}"),
        ]
        if fp[k] != saved[k]
    ]
    if out:
        return out
    if (
        "rep_sha1" in saved
        and representation_digest(adata, use_rep, saved["n_cols"]) != saved["rep_sha1"]
    ):
        out.append(
            f"the values of {rep} (its first {saved['n_cols']} columns) differ from those it was trained on "
            "(a rerun PCA flips signs; sc.pp.scale and other in-place steps change values)"
        )
    if (
        time_key is not None and "times" in saved and time_key in adata.obs
    ):  # a missing column: get_times says so
        t, times = get_times(adata, time_key, min_points=1)
        if times.tolist() != saved["times"]:
            out.append(
                f"the time points in obs[{time_key!r}]: saved {saved['times']}, given {times.tolist()}"
            )
        elif "times_sha1" in saved and times_digest(t) != saved["times_sha1"]:
            out.append(
                f"the cells' times in obs[{time_key!r}] (the same time points, given to other cells)"
            )
    key = saved.get("growth_key")
    if key is not None:
        if key not in adata.obs:
            out.append(f"obs has no column {key!r}, the growth prior the model was trained with")
        else:
            try:
                same = growth_digest(adata, key) == saved["growth_sha1"]
            except (TypeError, ValueError):
                same = False
            if not same:
                out.append(
                    f"the growth prior obs[{key!r}] differs from the one the model was trained "
                    "with (scored again, or edited)"
                )
    return out


def mismatch_error(differences: list[str]) -> ValueError:
    """The error for an AnnData that is not the one a model was trained on."""
    return ValueError(
        "this AnnData is not the one the model was trained on: "
        + "; ".join(differences)
        + ". Pass the AnnData the model was trained on, as it was then, or train a new model on "
        "this one (cf.CellFlow(adata, ...).train())."
    )


def write_model_files(model, tmp: Path) -> None:
    """The files of a saved :class:`cellflow.CellFlow`, written into ``tmp`` (the temporary folder
    of :meth:`~cellflow.models._base.ModelBase.save`): ``model.pt``, ``score.pt`` (SB),
    ``geodesic.pt`` (OT-MFM) and ``config.json``."""

    def cpu(module):  # saved on the CPU, so that any machine loads it
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}

    torch.save(cpu(model.net), tmp / "model.pt")
    if model.score_net is not None:
        torch.save(cpu(model.score_net), tmp / "score.pt")
    if model.growth_net is not None:
        torch.save(cpu(model.growth_net), tmp / "growth.pt")
    if model.interpolant is not None:
        torch.save(model.interpolant.state_dict(), tmp / "geodesic.pt")
    cfg = dict(
        class_="CellFlow",
        time_key=model.time_key,
        use_rep=model.use_rep,
        n_pcs=model.n_pcs,
        whiten=model.whiten,
        method=model.method,
        sigma=model.sigma,
        time_scale=model.time_scale,
        time_origin=model.time_origin,
        time_unit=model.time_unit,
        net=model.net.config,
        per_interval=model.per_interval,
        growth=model.growth,
        growth_key=model.growth_key,
        tau=model.tau,
        prior_scale=model.prior_scale,
        min_cells=model.min_cells,
        seed=model.seed,
        times=model.times.tolist(),
        scaler=model.scaler.to_dict(),
        fingerprint=model.fingerprint,
        holdout=model.holdout,
        # how it was trained, so that a loaded model can train bootstrap replicates
        train_settings=getattr(model, "_train_settings", None),
    )
    write_json(tmp / "config.json", cfg)


def _load_state(module, path: Path, name: str, device) -> None:
    """Load weights file ``name`` into ``module``; a file that does not fit the network that
    ``config.json`` describes is refused with both named."""
    state = load_weights(path, name, device, "CellFlow")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise IncompleteModelError(
            f"{path} does not hold a complete cellflow CellFlow: {name} does not match the "
            f"network config.json describes ({str(e).splitlines()[0]})."
        ) from None


def load_model(cls, path: str | Path, adata, device="cpu"):
    """:meth:`cellflow.CellFlow.load` (``cls`` is the class to build)."""
    path = Path(path)
    cfg = read_model_config(path, "CellFlow")
    missing = [
        k
        for k in (
            "class_",
            "time_key",
            "use_rep",
            "n_pcs",
            "method",
            "net",
            "times",
            "scaler",
            "fingerprint",
        )
        if k not in cfg
    ]
    if missing or cfg.get("class_") != "CellFlow":
        what = (
            f"its config.json lacks {', '.join(missing)}"
            if missing
            else f"it holds a {cfg.get('class_') or cfg.get('class')}"
        )
        raise ValueError(
            f"{path} does not hold a complete cellflow CellFlow: {what}. Save the model again."
        )
    problems = []
    if cfg["time_key"] not in adata.obs:
        problems.append(f"obs has no column {cfg['time_key']!r}")
    if not has_representation(adata, cfg["use_rep"]):
        problems.append(
            "X is empty" if cfg["use_rep"] == "X" else f"obsm has no {cfg['use_rep']!r}"
        )
    else:
        # models saved before the fingerprint held the times still compare the time points
        saved = {"times": cfg["times"], **cfg["fingerprint"]}
        problems += fingerprint_differences(adata, cfg["use_rep"], saved, cfg["time_key"])
    if problems:
        raise mismatch_error(problems)
    net = cfg["net"]
    model = cls(
        adata,
        cfg["time_key"],
        use_rep=cfg["use_rep"],
        n_pcs=cfg["n_pcs"],
        whiten=cfg["whiten"],
        method=cfg["method"],
        sigma=cfg["sigma"],
        time_scale=cfg["time_scale"],
        hidden=net["hidden"],
        activation=net["activation"],
        per_interval=cfg.get("per_interval", False),
        growth=cfg.get("growth"),
        growth_key=cfg.get("growth_key"),
        tau=cfg.get("tau", GROWTH_TAU) if cfg.get("growth") == "learned" else None,
        min_cells=cfg["min_cells"],
        seed=cfg["seed"],
        device=device,
    )
    model.scaler = Standardizer.from_dict(cfg["scaler"])
    model.holdout = cfg.get("holdout")
    model.prior_scale = cfg.get("prior_scale")
    model._train_settings = cfg.get("train_settings")
    if model.per_interval and model.holdout is not None:
        model._build_networks()  # a held-out time point is not a knot
    # models saved before time_unit existed ran real time unscaled
    model.time_origin, model.time_unit = (
        float(cfg.get("time_origin", 0.0)),
        float(cfg.get("time_unit", 1.0)),
    )
    _load_state(model.net, path, "model.pt", model.device)
    model.net.eval()
    if model.score_net is not None:
        if (path / "score.pt").exists():
            _load_state(model.score_net, path, "score.pt", model.device)
            model.score_net.eval()
        else:  # saved before SB models kept a score network
            model.score_net = None
    if model.growth_net is not None:
        _load_state(model.growth_net, path, "growth.pt", model.device)
        model.growth_net.eval()
    if model.spec.geodesic and (path / "geodesic.pt").exists():
        model.interpolant = GeodesicInterpolant.from_state_dict(
            load_weights(path, "geodesic.pt", None, "CellFlow"), model.n_pcs
        )
        model.interpolant.eval()
    return model
