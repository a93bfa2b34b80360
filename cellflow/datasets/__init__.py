"""Data sets: 2-D toy distributions for benchmarks."""

from ._toy import TOY_DISTRIBUTIONS, toy_sample

__all__ = ["toy_sample", "TOY_DISTRIBUTIONS"]
