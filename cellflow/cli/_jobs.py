"""The command-line jobs behind ``cellflow fit`` and ``cellflow evaluate``: read an ``.h5ad``,
run, write results. Each validates its input before any training starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import numpy as np

from .._defaults import (
    BENCHMARK_METHODS,
    BENCHMARK_SEEDS,
    BENCHMARK_WHITEN,
    MAX_EVAL,
    MODEL_EMA_DECAY,
    MODEL_WHITEN,
    OT_PLAN,
    STEPS,
    TIME_SCALE,
    USE_REP,
)
from .._io import (
    check_model_folder,
    check_not_an_input,
    check_output_file,
    model_folder,
    write_csv,
    write_h5ad,
    write_json,
)
from .._types import Preprocess
from ..course.read import expression_kind, sampled_values


def read_h5ad(path: str | Path, backed: bool = False):
    """Read ``path``; with ``backed``, leave ``X`` on disk (``anndata.read_h5ad(...,
    backed="r")``)."""
    import anndata as ad

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    if path.suffix != ".h5ad":
        raise ValueError(f"{path} is not an .h5ad file.")
    return ad.read_h5ad(path, backed="r") if backed else ad.read_h5ad(path)


PREPROCESS_GENES, PREPROCESS_PCS = (
    2000,
    50,
)  # scanpy's tutorial choices: 2,000 variable genes, 50 PCs


def looks_like(adata) -> str:
    """What ``X`` holds (:func:`cellflow.course.read.expression_kind`), read on up to 1,000
    evenly spaced cells."""
    return expression_kind(sampled_values(adata.X))


def _check_preprocess(adata, kind: str, flag: str) -> None:
    """Refuse ``--preprocess KIND`` for an ``X`` that holds something else: normalising or
    logging values that already were would be a silent wrong answer. The message names the
    kind the file looks like."""
    seen = looks_like(adata)
    if seen == kind:
        return
    if seen == "scaled":
        raise ValueError(
            f"{flag} {kind}: X holds negative values (centred or scaled), from which no "
            "preprocessing starts; give the representation with --use-rep (e.g. X_pca)."
        )
    what = {
        "counts": "raw counts",
        "normalised": "values normalised per cell but not logged (TPM, FPKM, CPM?)",
        "log": "log-normalised values",
    }
    raise ValueError(
        f"{flag} {kind} expects {what[kind]}, but X looks like {what[seen]}; use "
        f"{flag} {seen}, or give the representation with --use-rep."
    )


def _same_matrix(A, B) -> bool:
    """Whether two matrices (dense or sparse) hold the same values."""
    import scipy.sparse as sp

    if A.shape != B.shape:
        return False
    if sp.issparse(A) or sp.issparse(B):
        return (sp.csr_matrix(A) != sp.csr_matrix(B)).nnz == 0
    return bool(np.array_equal(np.asarray(A), np.asarray(B)))


#: the layer that keeps ``X`` as it was before preprocessing, per kind of input
KEPT_LAYER = {"counts": "counts", "normalised": "normalised", "log": None}


def preprocess_counts(
    adata,
    *,
    kind: str = "counts",
    n_top_genes: int = PREPROCESS_GENES,
    n_comps: int = PREPROCESS_PCS,
    seed: int = 0,
) -> dict:
    """scanpy's standard preprocessing, in place, from what ``X`` holds (``kind``):

    - ``"counts"``: ``X`` becomes ``log1p`` of counts normalised to each cell's median total
      (``sc.pp.normalize_total``, ``sc.pp.log1p``), the counts kept in ``layers["counts"]``;
    - ``"normalised"`` (TPM, FPKM, CPM: normalised per cell, not logged): ``X`` becomes
      ``log1p`` of it, the values kept in ``layers["normalised"]``;
    - ``"log"`` (log-normalised already): ``X`` is used as it is.

    Then ``var["highly_variable"]`` marks the ``n_top_genes`` most variable genes
    (``sc.pp.highly_variable_genes``, flavour ``seurat``), on which ``sc.pp.pca`` computes
    ``obsm["X_pca"]`` and ``varm["PCs"]``. Returns the choices made, for ``uns``."""
    import scanpy as sc

    n_top_genes = min(n_top_genes, adata.n_vars)
    n_comps = min(n_comps, adata.n_obs - 1, n_top_genes - 1)
    steps = []
    if KEPT_LAYER[kind] is not None:
        adata.layers[KEPT_LAYER[kind]] = adata.X.copy()
    if kind == "counts":
        sc.pp.normalize_total(adata)
        steps.append("normalize_total")
    if kind in ("counts", "normalised"):
        sc.pp.log1p(adata)
        steps.append("log1p")
    sc.pp.highly_variable_genes(adata, n_top_genes=n_top_genes)
    sc.pp.pca(adata, n_comps=n_comps, mask_var="highly_variable", random_state=seed)
    return {
        "input": kind,
        "steps": steps + ["highly_variable_genes", "pca"],
        **({"target_sum": "median"} if kind == "counts" else {}),
        "n_top_genes": int(n_top_genes),
        "hvg_flavor": "seurat",
        "n_comps": int(n_comps),
        **({f"{kind}_layer": KEPT_LAYER[kind]} if KEPT_LAYER[kind] else {}),
    }


def _prepared_input(
    adata,
    path_in,
    *,
    use_rep,
    backed,
    preprocess,
    seed,
    growth,
    score_growth,
    time_unit,
    gene_symbols,
    velocity,
    gene_velocity,
    basis,
    overwrite,
    flag,
    preprocess_flag,
):
    """:func:`fit_h5ad`'s input made ready before any training: ``X`` preprocessed into
    ``obsm["X_pca"]`` and the growth prior scored when asked, and every result the fit would
    write checked not to overwrite one already there (unless ``overwrite``). Returns the
    preprocessing choices (``None`` without ``preprocess``)."""
    choices = None
    if preprocess:
        if use_rep != "X_pca" or backed:
            raise ValueError(
                f"{preprocess_flag} computes obsm['X_pca'] from X in memory; it does not go with "
                f"{'--backed' if backed else 'use_rep=' + repr(use_rep)}."
            )
        if "X_pca" in adata.obsm and not overwrite:
            raise FileExistsError(
                f"{path_in} already holds obsm['X_pca']; drop {preprocess_flag} to fit on it, "
                f"or pass {flag} to compute it again from the counts in X."
            )
        kind = "counts" if preprocess is True else preprocess
        if kind not in get_args(Preprocess):
            raise ValueError(
                f"{preprocess_flag} must be one of {list(get_args(Preprocess))} (what X holds), "
                f"got {kind!r}."
            )
        _check_preprocess(adata, kind, preprocess_flag)
        kept = KEPT_LAYER[kind]
        if kept in adata.layers and not overwrite and not _same_matrix(adata.layers[kept], adata.X):
            raise FileExistsError(
                f"{path_in} already holds layers[{kept!r}], other values than the X that "
                f"{preprocess_flag} keeps there; drop it (or rename it) first, or pass "
                f"{flag} to replace it."
            )
        choices = preprocess_counts(adata, kind=kind, seed=seed)
    elif use_rep == "X_pca" and "X_pca" not in adata.obsm:
        raise KeyError(
            f"{path_in} has no obsm['X_pca']; add {preprocess_flag} to compute it from the raw "
            "counts "
            f"in X (normalize_total, log1p, {PREPROCESS_GENES} highly variable genes, "
            f"{PREPROCESS_PCS} "
            "PCs), or name another representation (obsm holds: "
            f"{', '.join(adata.obsm) or 'nothing'})."
        )
    if growth is not None and "growth_rate" in adata.obs and not overwrite:
        raise FileExistsError(
            f"{path_in} already holds obs['growth_rate']; pass {flag} to replace it."
        )
    if score_growth is not None:
        from ..pp import score_growth as score
        from ..pp._growth import SCORE_COLUMNS

        held = [c for c in (*SCORE_COLUMNS, "growth_prior") if c in adata.obs]
        if held and not overwrite:
            raise FileExistsError(
                f"{path_in} already holds {', '.join(f'obs[{c!r}]' for c in held)}; drop "
                f"--score-growth to use them, or pass {flag} to score again."
            )
        score(
            adata,
            organism=score_growth,
            time_unit=time_unit,
            gene_symbols=gene_symbols,
            overwrite=overwrite,
        )
    if (
        velocity and not overwrite
    ):  # tl.velocity and tl.velocity_embedding would refuse these after training
        from ..tl._velocity import existing_velocity_keys

        found = existing_velocity_keys(adata, use_rep, genes=gene_velocity)
        if (
            basis
            and f"X_{basis}" in adata.obsm
            and f"velocity_{basis}" in adata.obsm
            and f"X_{basis}" != use_rep
        ):
            found.append(f"obsm['velocity_{basis}']")
        if found:
            raise FileExistsError(
                f"{path_in} already holds {', '.join(found)}; pass {flag} to replace them."
            )
    return choices


def fit_h5ad(
    path_in: str | Path,
    path_out: str | Path,
    *,
    time_key: str,
    use_rep: str = USE_REP,
    n_pcs: int | None = None,
    whiten: bool = MODEL_WHITEN,
    method: str = "ot",
    sigma: float | None = None,
    time_scale: str = TIME_SCALE,
    steps: int = STEPS,
    batch_size: int | None = None,
    ot_batch_size: int | None = None,
    ot_plan: str = OT_PLAN,
    seed: int = 0,
    model_dir: str | Path | None = None,
    velocity: bool = True,
    basis: str | None = "umap",
    overwrite: bool = False,
    global_coupling: bool = False,
    backed: bool = False,
    progress: bool = True,
    metric: dict | None = None,
    device: str = "cpu",
    ema_decay: float | None = MODEL_EMA_DECAY,
    per_interval: bool = False,
    preprocess: bool | str = False,
    gene_velocity: bool = True,
    growth: str | None = None,
    growth_key: str | None = None,
    tau_a: float | None = None,
    score_growth: str | None = None,
    time_unit: str = "day",
    gene_symbols: str | None = None,
    on_disk: bool = False,
    flag: str = "overwrite=True",
    preprocess_flag: str = "preprocess=True",
):
    """Fit a :class:`cellflow.CellFlow`, save it, add velocities, write ``path_out``.

    ``on_disk=True`` never loads the input: it is read on demand and ``path_out`` is the input
    with the velocities added, written a block of cells at a time (:mod:`cellflow.cli._ondisk`;
    returns ``(None, model)``).

    ``backed=True`` leaves ``X`` on disk, for ``use_rep="X"`` on files larger than memory;
    ``metric`` is passed to :meth:`cellflow.CellFlow.train` (OT-MFM only), as is ``ema_decay``
    (0 or ``None``: no weight average); ``per_interval`` to :class:`cellflow.CellFlow`.
    ``preprocess=True`` (or ``"counts"``) starts from raw counts in ``X``, ``"normalised"`` from
    TPM-like values, ``"log"`` from log-normalised ones (:func:`preprocess_counts`; the choices
    are saved in ``uns["cellflow"]["preprocess"]``); ``gene_velocity=False`` leaves out the dense
    cells × genes ``layers["velocity"]`` (``obsm["velocity_pca"]`` is written still).
    ``growth``, ``growth_key`` and ``tau_a`` go to :class:`cellflow.CellFlow`; a growth-aware model
    also writes ``obs["growth_rate"]`` (:func:`cellflow.tl.growth_rates`). ``score_growth``
    (``"human"`` or ``"mouse"``) first scores the genes of ``X`` into ``obs["growth_prior"]``
    (:func:`cellflow.pp.score_growth`), with rates per ``time_unit`` of ``obs[time_key]``, genes
    named by ``var[gene_symbols]`` when given.

    ``OUT.h5ad`` and the model folder are checked before any work starts, and written whole or
    not at all (:mod:`cellflow._io`), so ``path_out == path_in`` never loses the input. ``flag``
    is how errors name the fix (``"--overwrite"`` on the command line)."""
    from .. import tl
    from ..models.cells import CellFlow

    # every output is checked before the input is read or a step is trained
    path_out = check_output_file(path_out, overwrite, flag)
    model_dir = Path(model_dir) if model_dir else path_out.with_name(path_out.stem + "_model")
    check_not_an_input(
        model_dir, [path_in], "--model-dir" if flag == "--overwrite" else "model_dir"
    )
    # a model left by an earlier run of this command that was stopped before OUT was written is
    # that run's, not the user's: it is replaced without asking
    replace_model = overwrite or _unfinished_fit(model_dir, path_out)
    check_model_folder(model_dir, replace_model, flag)
    model_kwargs = dict(
        time_key=time_key,
        use_rep=use_rep,
        n_pcs=n_pcs,
        whiten=whiten,
        method=method,
        sigma=sigma,
        time_scale=time_scale,
        per_interval=per_interval,
        growth=growth,
        growth_key=growth_key,
        tau_a=tau_a,
        seed=seed,
        device=device,
    )
    train_kwargs = dict(
        steps=steps,
        batch_size=batch_size,
        ot_batch_size=ot_batch_size,
        ot_plan=ot_plan,
        global_coupling=global_coupling,
        ema_decay=ema_decay or None,
        metric=metric,
    )
    if on_disk:
        from ._ondisk import fit_on_disk

        _check_on_disk(
            path_in, use_rep, backed, preprocess, score_growth, velocity, growth, overwrite, flag
        )
        model = fit_on_disk(
            Path(path_in),
            path_out,
            model_dir,
            replace_model,
            model_kwargs=model_kwargs,
            train_kwargs=train_kwargs,
            velocity=velocity,
            growth=growth,
            record=lambda m: _fit_record(m, model_dir, time_key, steps, seed, growth),
            progress=progress,
        )
        return None, model
    adata = read_h5ad(path_in, backed=backed)
    choices = _prepared_input(
        adata,
        path_in,
        use_rep=use_rep,
        backed=backed,
        preprocess=preprocess,
        seed=seed,
        growth=growth,
        score_growth=score_growth,
        time_unit=time_unit,
        gene_symbols=gene_symbols,
        velocity=velocity,
        gene_velocity=gene_velocity,
        basis=basis,
        overwrite=overwrite,
        flag=flag,
        preprocess_flag=preprocess_flag,
    )
    model = CellFlow(adata, **model_kwargs)
    model.train(progress=progress, **train_kwargs)
    from ..train import distributed

    if not distributed.is_main():  # under torchrun, rank 0 writes the results
        return adata, model
    save_fitted(model, model_dir, replace_model, path_out)
    if velocity:
        tl.velocity(adata, model, genes=gene_velocity, overwrite=overwrite)
        # the velocity is already in obsm[f"velocity_{basis}"] when the embedding is the
        # representation
        if basis and f"X_{basis}" in adata.obsm and f"X_{basis}" != use_rep:
            tl.velocity_embedding(adata, basis=basis, overwrite=overwrite)
    if growth is not None:
        tl.growth_rates(adata, model, overwrite=overwrite)
    adata.uns["cellflow"] = _fit_record(model, model_dir, time_key, steps, seed, growth)
    if choices is not None:
        adata.uns["cellflow"]["preprocess"] = choices
    write_h5ad(adata, path_out)
    return adata, model


def save_fitted(model, model_dir: Path, replace_model: bool, path_out: Path) -> None:
    """Save a fitted model to ``model_dir`` (whole or not at all); its ``config.json`` names the
    output it is for (:func:`_unfinished_fit`)."""
    with model_folder(model_dir, replace_model) as tmp:
        model._write_files(tmp)
        cfg = json.loads((tmp / "config.json").read_text())
        cfg["fit_output"] = str(path_out.resolve())  # see _unfinished_fit
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2))


def _check_on_disk(
    path_in, use_rep, backed, preprocess, score_growth, velocity, growth, overwrite, flag
) -> None:
    """Refuse, before any work, what ``--on-disk`` does not do, and results already in the
    input that the fit would replace (without ``overwrite``)."""
    from ..course.ondisk import read_lazy
    from ..tl._velocity import existing_velocity_keys

    cli = flag == "--overwrite"
    name = "--on-disk" if cli else "on_disk=True"
    for given, what, fix in [
        (use_rep == "X", "--use-rep X" if cli else "use_rep='X'", "use --backed for X"),
        (backed, "--backed" if cli else "backed=True", "drop one of them"),
        (preprocess, "--preprocess" if cli else "preprocess", "compute the PCs first"),
        (score_growth, "--score-growth" if cli else "score_growth", "score it first"),
    ]:
        if given:
            raise ValueError(
                f"{name} reads a representation in obsm; {what} needs the AnnData in "
                f"memory ({fix})."
            )
    with read_lazy(path_in) as lazy:
        existing = existing_velocity_keys(lazy, use_rep, genes=False) if velocity else []
        existing += ["obs['growth_rate']"] * (growth is not None and "growth_rate" in lazy.obs)
    if existing and not overwrite:
        raise FileExistsError(
            f"{path_in} already holds {', '.join(existing)}; pass {flag} to replace "
            f"{'it' if len(existing) == 1 else 'them'}."
        )


def _fit_record(model, model_dir, time_key, steps, seed, growth) -> dict:
    """What ``cellflow fit`` did, for ``uns["cellflow"]``."""
    return {
        "model_dir": str(model_dir),
        "method": model.method,
        "time_key": time_key,
        "use_rep": model.course.use_rep,
        "n_pcs": int(model.course.n_pcs),
        "whiten": bool(model.course.whiten),
        "steps": int(steps),
        "batch_size": int(model.batch_size),
        "seed": int(seed),
        "per_interval": bool(model.per_interval),
        "growth": growth or "none",
        **(
            {"prior_scale": float(model.prior_scale)}
            if growth == "learned" and model.prior_scale is not None
            else {}
        ),
        "final_loss": float(np.mean(model.history.loss[-50:])),
    }


def _unfinished_fit(model_dir: Path, path_out: Path) -> bool:
    """Whether ``model_dir`` holds the model of an earlier ``fit`` to ``path_out`` that stopped
    before ``path_out`` was written (the model is saved first; its ``config.json`` names the
    output it was for)."""
    if path_out.exists():
        return False
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and cfg.get("fit_output") == str(path_out.resolve())


def evaluate_h5ad(
    path_in: str | Path,
    path_out: str | Path,
    *,
    time_key: str,
    methods=BENCHMARK_METHODS,
    seeds=BENCHMARK_SEEDS,
    use_rep: str = USE_REP,
    n_pcs: int | None = None,
    whiten: bool = BENCHMARK_WHITEN,
    held_out=None,
    steps: int = STEPS,
    batch_size: int | None = None,
    max_eval: int = MAX_EVAL,
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    flag: str = "overwrite=True",
    resume_flag: str = "resume=True",
    **train_kwargs,
):
    """Run :func:`cellflow.evaluate_holdout` on a file; write the table as CSV and return it with
    its summary. ``n_pcs=None`` takes the paper's 5 leading columns of ``use_rep``, or all of a
    narrower representation (a 2-D layout such as ``X_spring``).

    The CSV is rewritten, atomically, after every row, so a run that is stopped keeps what it
    finished. Its settings go beside it (``TABLE.settings.json``); ``resume=True`` reads both,
    checks that the settings are this run's, and trains only the models that are missing."""
    from ..course.fingerprint import fingerprint
    from ..course.store import has_representation, representation_shape
    from ..evaluate import evaluate_holdout, summarize_holdout

    path_out = Path(path_out)
    settings_path = path_out.with_name(path_out.stem + ".settings.json")
    for out in (path_out, settings_path):
        check_not_an_input(out, [path_in], "--out" if flag == "--overwrite" else "path_out")
    adata = read_h5ad(path_in)
    width = representation_shape(adata, use_rep)[1] if has_representation(adata, use_rep) else None
    settings = dict(
        input=str(Path(path_in).resolve()),
        # the data themselves, so that a resumed run never mixes rows of two versions of a file
        data=fingerprint(adata, use_rep, time_key if time_key in adata.obs else None, width),
        time_key=time_key,
        use_rep=use_rep,
        n_pcs=n_pcs,
        whiten=bool(whiten),
        held_out=None if held_out is None else [float(h) for h in held_out],
        steps=int(steps),
        batch_size=batch_size,
        max_eval=int(max_eval),
        **{k: v for k, v in train_kwargs.items() if k != "device"},
    )
    done = (
        _earlier_table(path_out, settings_path, settings, resume_flag)
        if resume and path_out.exists()
        else None
    )
    if done is None:
        if path_out.exists() and not overwrite and not path_out.is_dir():
            raise FileExistsError(
                f"{path_out} exists; pass {flag} to replace it, or {resume_flag} to continue "
                "the run that wrote it."
            )
        check_output_file(path_out, overwrite, flag)
    write_json(settings_path, settings, default=str)
    df = evaluate_holdout(
        adata,
        time_key,
        methods=methods,
        seeds=seeds,
        use_rep=use_rep,
        n_pcs=n_pcs,
        whiten=whiten,
        held_out=held_out,
        steps=steps,
        batch_size=batch_size,
        max_eval=max_eval,
        progress=progress,
        verbose=True,
        done=done,
        on_row=lambda table: write_csv(table, path_out, index=False),
        **train_kwargs,
    )
    write_csv(df, path_out, index=False)
    return df, summarize_holdout(df)


def _earlier_table(path: Path, settings_path: Path, settings: dict, flag: str):
    """The table a stopped run left at ``path``, if its settings file says it was run with
    ``settings``; otherwise an error that says what differs."""

    import pandas as pd

    if not settings_path.exists():
        raise FileNotFoundError(
            f"{path} has no {settings_path.name} beside it, so its settings are unknown; "
            f"{flag} continues only a table that cellflow evaluate wrote."
        )
    before = json.loads(json.dumps(settings, default=str))
    saved = json.loads(settings_path.read_text())
    differ = [
        f"{k}: {saved.get(k)!r} then, {before.get(k)!r} now"
        for k in sorted(set(saved) | set(before))
        if saved.get(k) != before.get(k) and k != "data"
    ]
    if not differ and saved.get("data") != before.get("data"):
        differ = ["the data in the input file (its cells, representation or times changed)"]
    if differ:
        raise ValueError(
            f"{path} was written with other settings ({'; '.join(differ)}); rerun with those, "
            "or write to another --out."
        )
    return pd.read_csv(path)
