"""Benchmarks: `make bench` prints one table of figures against their targets."""
