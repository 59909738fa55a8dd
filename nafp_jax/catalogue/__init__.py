"""The catalogue: storing fingerprints, identifying, exporting, no-match thresholds."""
