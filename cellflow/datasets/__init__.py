"""Data sets: embedded simulated differentiation time courses (two fates, or three and more),
loaders for the real single-cell
time courses, 2-D toy distributions and the arch time course for benchmarks, and scikit-learn's
tables and digits."""

from ._arch import arch_time_course
from ._growth import simulated_growth
from ._loaders import DATA_DIR_ENV, available, load
from ._multifate import simulated_multifate
from ._simulated import simulated_differentiation, true_velocity_pca
from ._sklearn import TABLES, load_digits_images, load_table
from ._toy import TOY_DISTRIBUTIONS, toy_sample

__all__ = [
    "simulated_differentiation",
    "simulated_growth",
    "simulated_multifate",
    "true_velocity_pca",
    "load",
    "available",
    "DATA_DIR_ENV",
    "toy_sample",
    "TOY_DISTRIBUTIONS",
    "arch_time_course",
    "load_table",
    "load_digits_images",
    "TABLES",
]
