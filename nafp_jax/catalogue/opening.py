"""Opening a catalogue together with the model that made its fingerprints."""

from __future__ import annotations

from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.inference.shipped_model import model_path


def load_catalogue_and_model(db: str | None, model: str | None
                             ) -> tuple[catalogue_lib.Catalogue | None, Fingerprinter]:
  """(the catalogue at `db` or None, a Fingerprinter of `model` or the shipped model).

  Refuses a catalogue built by another model (CatalogueError naming both).
  """
  cat = catalogue_lib.Catalogue(db) if db is not None else None
  bundle = load_encoder(model_path(model))
  if cat is not None:
    cat.check_model(bundle.identity)
  return cat, Fingerprinter(bundle)
