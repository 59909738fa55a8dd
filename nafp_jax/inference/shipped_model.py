"""Where the model comes from when a command is given none: the small model shipped in the package.

Kept free of JAX imports so that the CLI can resolve paths (and print --help)
before it sets up XLA's CPU devices.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "model"


def model_path(arg: str | None) -> Path:
  """The model folder a command should load: `arg` if given, else the shipped model.

  Raises SystemExit with a message naming the missing folder when neither exists,
  which the `nafp` entry point turns into exit status 1.
  """
  if arg:
    return Path(arg)
  if (SHIPPED_MODEL / "config.json").exists():
    return SHIPPED_MODEL
  raise SystemExit("error: no --model given and no shipped model at "
                   f"{SHIPPED_MODEL}; pass a training workdir or an exported model folder")
