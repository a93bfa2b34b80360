"""Benchmarks (not tests): ``cellflow bench toy`` and ``cellflow bench throughput``."""
