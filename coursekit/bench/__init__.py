"""Benchmarks of the toolkit: `make bench` runs them; each prints `key=value` figures last."""
