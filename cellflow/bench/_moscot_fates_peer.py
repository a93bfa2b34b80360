"""moscot 0.5.2's fate probabilities on a simulated course: run by ``cellflow bench fates
--moscot-python PY``.

It runs in moscot's own environment (CPU JAX), reads an ``.h5ad`` written by the benchmark
(``obsm["X_pca"]``, ``obs["day"]``, ``obs["fate_label"]``: each last-day cell's fate, empty
elsewhere) and writes a JSON. For each ε it solves the ``TemporalProblem`` of moscot's
tutorials (``prepare(time_key="day", joint_attr="X_pca")``, balanced, ``solve(epsilon=ε)``),
then, for each scored day, pulls every fate's last-day cells back to that day's cells through
the chain of couplings (``pull(source=day, target=last, data="fate_label", subset=fate)``);
a cell's fate probabilities are its pulled masses normalised over the fates. Nothing here
imports cellflow.

Usage: ``python _moscot_fates_peer.py IN.h5ad OUT.json EPS [EPS ...] --days D [D ...]``
"""

import json
import sys
import time
import warnings

import anndata as ad
import numpy as np

warnings.filterwarnings("ignore")


def main(path_in: str, path_out: str, eps: list[float], days: list[float]) -> None:
    from moscot.problems.time import TemporalProblem  # in moscot's environment only

    adata = ad.read_h5ad(path_in)
    adata.obs["day"] = adata.obs["day"].astype(float)
    last = float(adata.obs["day"].max())
    fates = sorted(f for f in adata.obs["fate_label"].dropna().unique() if f != "")
    adata.obs["fate_label"] = adata.obs["fate_label"].replace("", np.nan).astype("category")
    out = {"fates": fates, "by_eps": {}}
    for e in eps:
        start = time.perf_counter()
        tp = TemporalProblem(adata).prepare(time_key="day", joint_attr="X_pca")
        tp = tp.solve(epsilon=e)
        probs, converged = {}, all(bool(p.solution.converged) for p in tp.problems.values())
        for day in days:
            mass = []
            for f in fates:
                pulled = tp.pull(
                    source=float(day),
                    target=last,
                    data="fate_label",
                    subset=f,
                    normalize=False,
                    key_added=None,
                )
                mass.append(np.asarray(pulled, dtype=float).ravel())
            M = np.stack(mass, 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                probs[str(day)] = (M / M.sum(1, keepdims=True)).tolist()
        out["by_eps"][str(e)] = dict(
            seconds=time.perf_counter() - start, converged=converged, probs=probs
        )
    with open(path_out, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    args = sys.argv[1:]
    k = args.index("--days")
    main(args[0], args[1], [float(v) for v in args[2:k]], [float(v) for v in args[k + 1 :]])
