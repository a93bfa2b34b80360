"""Saving a `CellFlow` to a folder and loading it against an AnnData.

A saved model is ``config.json`` (settings, times, scaling, and a fingerprint of the AnnData
it was trained on) beside ``model.pt`` (a state dict; ``score.pt`` and ``geodesic.pt`` for SB
and OT-MFM models), read back with ``torch.load(..., weights_only=True)``. Loading against
another AnnData is refused with what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ._anndata import Standardizer
from ._cells import has_representation, representation_shape
from .geodesics import GeodesicInterpolant

__all__ = ["fingerprint", "fingerprint_differences", "save_model", "load_model"]


def fingerprint(adata, use_rep: str) -> dict:
    """The number of cells, a hash of their names and the shape of the representation."""
    names = hashlib.sha1("\n".join(map(str, adata.obs_names)).encode()).hexdigest()
    return {"n_obs": int(adata.n_obs), "obs_names_sha1": names, "rep_shape": list(representation_shape(adata, use_rep))}


def fingerprint_differences(adata, use_rep: str, saved: dict) -> list[str]:
    """What differs between ``adata`` and a saved fingerprint (empty when it is the same data)."""
    fp = fingerprint(adata, use_rep)
    return [f"{label}: saved {saved[k]}, given {fp[k]}"
            for k, label in [("n_obs", "number of cells"), ("obs_names_sha1", "cell names (obs_names)"),
                             ("rep_shape", "shape of X" if use_rep == "X" else f"shape of obsm[{use_rep!r}]")]
            if fp[k] != saved[k]]


def save_model(model, path: str | Path, overwrite: bool = False) -> None:
    """:meth:`cellflow.CellFlow.save`."""
    path = Path(path)
    if (path / "model.pt").exists() and not overwrite:
        raise FileExistsError(f"{path} already holds a model; pass overwrite=True to replace it.")
    path.mkdir(parents=True, exist_ok=True)

    def cpu(module):  # saved on the CPU, so that any machine loads it
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}

    torch.save(cpu(model.net), path / "model.pt")
    if model.score_net is not None:
        torch.save(cpu(model.score_net), path / "score.pt")
    if model.interpolant is not None:
        torch.save(model.interpolant.state_dict(), path / "geodesic.pt")
    cfg = dict(class_="CellFlow", time_key=model.time_key, use_rep=model.use_rep, n_pcs=model.n_pcs,
               whiten=model.whiten, method=model.method, sigma=model.sigma, time_scale=model.time_scale,
               net=model.net.config, per_interval=model.per_interval, min_cells=model.min_cells, seed=model.seed,
               times=model.times.tolist(), scaler=model.scaler.to_dict(), fingerprint=model.fingerprint, holdout=model.holdout)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))


def load_model(cls, path: str | Path, adata, device="cpu"):
    """:meth:`cellflow.CellFlow.load` (``cls`` is the class to build)."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no config.json in {path}: is it a folder written by CellFlow.save?")
    cfg = json.loads((path / "config.json").read_text())
    problems = []
    if cfg["time_key"] not in adata.obs:
        problems.append(f"obs has no column {cfg['time_key']!r}")
    if not has_representation(adata, cfg["use_rep"]):
        problems.append("X is empty" if cfg["use_rep"] == "X" else f"obsm has no {cfg['use_rep']!r}")
    else:
        problems += fingerprint_differences(adata, cfg["use_rep"], cfg["fingerprint"])
    if problems:
        raise ValueError("this AnnData is not the one the model was trained on: " + "; ".join(problems) + ".")
    net = cfg["net"]
    model = cls(adata, cfg["time_key"], use_rep=cfg["use_rep"], n_pcs=cfg["n_pcs"], whiten=cfg["whiten"],
                method=cfg["method"], sigma=cfg["sigma"], time_scale=cfg["time_scale"], hidden=net["hidden"],
                activation=net["activation"], per_interval=cfg.get("per_interval", False), min_cells=cfg["min_cells"],
                seed=cfg["seed"], device=device)
    model.scaler = Standardizer.from_dict(cfg["scaler"])
    model.holdout = cfg.get("holdout")
    if model.per_interval and model.holdout is not None:
        model._build_networks()  # a held-out time point is not a knot
    model.net.load_state_dict(torch.load(path / "model.pt", weights_only=True, map_location=model.device))
    model.net.eval()
    if model.score_net is not None:
        if (path / "score.pt").exists():
            model.score_net.load_state_dict(torch.load(path / "score.pt", weights_only=True,
                                                       map_location=model.device))
            model.score_net.eval()
        else:  # saved before SB models kept a score network
            model.score_net = None
    if model.method == "mfm" and (path / "geodesic.pt").exists():
        model.interpolant = GeodesicInterpolant.from_state_dict(
            torch.load(path / "geodesic.pt", weights_only=True), model.n_pcs)
        model.interpolant.eval()
    return model
