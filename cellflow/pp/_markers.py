"""Marker gene sets for :func:`cellflow.pp.score_growth`: proliferation and apoptosis, human and
mouse, read from the package's data (``cellflow/pp/markers/<organism>_<set>.txt``: one gene per
line, the source on the first line). Gene names are facts from the publications cited with each
set; Waddington-OT (Schiebinger et al., Cell 2019) and moscot score the same sets.

- Proliferation: the G1/S and G2/M cell-cycle genes of Tirosh et al., Science 2016 (human) and
  their mouse orthologues (Tirosh et al., Nature 2016).
- Apoptosis: MSigDB's HALLMARK_APOPTOSIS (human) and HALLMARK_P53_PATHWAY (mouse orthologues;
  Liberzon et al., Cell Systems 2015).

>>> len(HUMAN_PROLIFERATION), MARKERS["mouse"]["apoptosis"][:2]
(97, ('Abat', 'Abcc5'))
"""

from importlib.resources import files


def read_markers(organism: str, which: str) -> tuple[str, ...]:
    """The genes of ``markers/<organism>_<which>.txt`` (comment lines start with ``#``)."""
    text = files(__package__).joinpath("markers", f"{organism}_{which}.txt").read_text()
    return tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


#: G1/S and G2/M genes, Tirosh et al. 2016 (97 genes)
HUMAN_PROLIFERATION = read_markers("human", "proliferation")
#: MSigDB HALLMARK_APOPTOSIS (161 genes)
HUMAN_APOPTOSIS = read_markers("human", "apoptosis")
#: mouse orthologues of the G1/S and G2/M genes (97 genes)
MOUSE_PROLIFERATION = read_markers("mouse", "proliferation")
#: mouse orthologues of MSigDB HALLMARK_P53_PATHWAY (193 genes)
MOUSE_APOPTOSIS = read_markers("mouse", "apoptosis")

#: the sets by organism: ``MARKERS[organism]["proliferation" | "apoptosis"]``
MARKERS = {
    "human": {"proliferation": HUMAN_PROLIFERATION, "apoptosis": HUMAN_APOPTOSIS},
    "mouse": {"proliferation": MOUSE_PROLIFERATION, "apoptosis": MOUSE_APOPTOSIS},
}
