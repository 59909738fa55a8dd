"""Nearest-neighbour backends and the sequential subsequence search (SPEC §5)."""
