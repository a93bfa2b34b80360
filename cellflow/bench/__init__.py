"""Benchmarks (not tests): ``cellflow bench toy``, ``throughput`` and ``velocity``."""
