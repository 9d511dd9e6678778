"""Benchmark sweeps (``offrl-zoo compare``): planning, running and reporting them."""
