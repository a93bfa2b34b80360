"""The time course: an AnnData's times, the cells of each time point in one representation,
their standardisation, the model clock and the fingerprint of the data
(:class:`~cellflow.course.timecourse.TimeCourse`); reading times and representations with
errors that name the fix (:mod:`~cellflow.course.read`); the per-time-point cell store that
training draws from, in memory or backed on disk (:mod:`~cellflow.course.store`); and the
fingerprint itself (:mod:`~cellflow.course.fingerprint`); an ``.h5ad`` file read on demand, for
courses too large to load (:mod:`~cellflow.course.ondisk`).

Nothing here imports a model, a tool or a plot: they all read the course.
"""

__all__ = ["TimeCourse"]


def __getattr__(name: str):
    # imported on first use: reading a file's times (the command line's checks) needs no torch
    if name == "TimeCourse":
        from .timecourse import TimeCourse

        return TimeCourse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
