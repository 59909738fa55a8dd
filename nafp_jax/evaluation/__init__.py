"""The paper's evaluation protocol (docs/design.md §6): query sets, hit rates, tables, plots."""
