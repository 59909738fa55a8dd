"""Where the model comes from when a command is given none: the small model shipped in the package,
and loading it (with the catalogue it must match) for the commands.

Kept free of JAX imports so that the CLI can resolve paths (and print --help)
before it sets up XLA's CPU devices.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_MODEL = Path(__file__).resolve().parent / "assets" / "model"


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


def load_catalogue_and_model(db: str | None, model: str | None):
  """(the catalogue at `db` or None, a Fingerprinter of `model` or the shipped model).

  Refuses a catalogue built by another model (CatalogueError naming both).
  """
  from nafp_jax import catalogue as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.Catalogue(db) if db is not None else None
  bundle = load_encoder(model_path(model))
  if cat is not None:
    cat.check_model(bundle.identity)
  return cat, Fingerprinter(bundle)
