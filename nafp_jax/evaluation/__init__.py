"""The paper's evaluation protocol (SPEC §6): query sets, hit rates, tables, plots."""
