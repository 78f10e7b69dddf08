"""Benchmarks of que-core (not part of the installed package)."""
