"""Saving a `CellFlow` to a folder and loading it against an AnnData.

A saved model is ``config.json`` (settings, the time course's block with the fingerprint of the
AnnData it was trained on, :meth:`cellflow.course.TimeCourse.to_dict`) beside ``model.pt`` (a
state dict; ``score.pt``, ``geodesic.pt`` and ``growth.pt`` for SB, OT-MFM and growth-aware
models), each read back with ``torch.load(path, weights_only=True)``. Loading against another
AnnData is refused with what differs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .._defaults import GROWTH_TAU
from .._io import IncompleteModelError, load_weights, read_model_config, write_json
from ..course import TimeCourse
from ..flow.geodesics import GeodesicInterpolant

__all__ = ["write_model_files", "load_model"]


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
        **model.course.to_dict(),
        method=model.method,
        sigma=model.sigma,
        net=model.net.config,
        per_interval=model.per_interval,
        growth=model.growth,
        growth_key=model.growth_key,
        tau_a=model.tau_a,
        prior_scale=model.prior_scale,
        seed=model.seed,
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
    # the representation's values are compared once the model has read them (one pass)
    TimeCourse.check_saved(cfg, adata, values=False)
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
        # saved before 0.1.1 as "tau"
        tau_a=cfg.get("tau_a", cfg.get("tau", GROWTH_TAU))
        if cfg.get("growth") == "learned"
        else None,
        min_cells=cfg["min_cells"],
        seed=cfg["seed"],
        device=device,
    )
    model.course.check_values(cfg)
    model.course.restore(cfg)
    model.holdout = cfg.get("holdout")
    model.prior_scale = cfg.get("prior_scale")
    model._train_settings = cfg.get("train_settings")
    if model.per_interval and model.holdout is not None:
        model._build_networks()  # a held-out time point is not a knot
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
