"""Nearest-neighbour backends and the sequential subsequence search (docs/design.md §5)."""
