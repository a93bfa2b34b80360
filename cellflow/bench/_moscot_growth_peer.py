"""moscot 0.5.2 on a growth time course: run by ``cellflow bench growth --moscot-python PY``.

It runs in moscot's own environment (CPU JAX), reads an ``.h5ad`` written by the benchmark
(log-normalised ``X`` with human gene symbols, ``obsm["X_pca"]``, ``obs["day"]`` and
``obs["branch"]``) and writes a JSON: moscot's prior and posterior growth rates per cell (the
``TemporalProblem`` of the moscot tutorials: ``score_genes_for_marginals`` with the human
gene sets, ``prepare(time_key="day")``, ``solve()`` at its defaults), the share of day-0 cells
whose descendants are in each branch at the last day (``pull`` of each branch back to the first
day), and the seconds each step took. Nothing here imports cellflow.

Usage: ``python _moscot_growth_peer.py IN.h5ad OUT.json``
"""

import json
import sys
import time
import warnings

import anndata as ad
import numpy as np

warnings.filterwarnings("ignore")


def main(path_in: str, path_out: str) -> None:
    from moscot.problems.time import TemporalProblem  # in moscot's environment only

    adata = ad.read_h5ad(path_in)
    days = sorted(adata.obs["day"].unique().tolist())
    adata.obs["day"] = adata.obs["day"].astype(float)
    start = time.perf_counter()
    tp = TemporalProblem(adata)
    tp = tp.score_genes_for_marginals(gene_set_proliferation="human", gene_set_apoptosis="human")
    tp = tp.prepare(time_key="day", joint_attr="X_pca")
    tp = tp.solve()
    seconds = time.perf_counter() - start
    prior = np.full(adata.n_obs, np.nan)
    posterior = np.full(adata.n_obs, np.nan)
    names = {n: i for i, n in enumerate(adata.obs_names)}
    for (src, _), problem in tp.problems.items():
        idx = [names[n] for n in problem.adata_src.obs_names]
        prior[idx] = np.asarray(problem.prior_growth_rates).ravel()
        posterior[idx] = np.asarray(problem.posterior_growth_rates).ravel()
    first, last = float(days[0]), float(days[-1])
    pulled = {}
    for b in ("A", "B"):
        out = tp.pull(
            source=first,
            target=last,
            data="branch",
            subset=b,
            normalize=False,
            scale_by_marginals=False,
            key_added=None,
        )
        pulled[b] = np.asarray(out).ravel()
    total = pulled["A"] + pulled["B"]
    with np.errstate(invalid="ignore", divide="ignore"):
        fate_A = pulled["A"] / total
    json.dump(
        dict(
            seconds=seconds,
            prior_growth=prior.tolist(),
            posterior_growth=posterior.tolist(),
            ancestor_share_A=float(np.nanmean(fate_A)),
            descendant_share_A=float(pulled["A"].sum() / total.sum()),
        ),
        open(path_out, "w"),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
