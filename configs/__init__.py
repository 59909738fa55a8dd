"""ml_collections config files; run one with `--config configs/<name>.py`."""
