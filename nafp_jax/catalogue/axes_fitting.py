"""Fitting a model's row axes (transform_coding.RowAxes) on its fingerprints of music.

The transform-coded row formats round fingerprints in the principal axes of the model's
own fingerprints.  Those axes are a property of the model, not of any one catalogue (a
catalogue's first rows may all be one track), so they are fitted once on music of the kind
the model was trained on, stored in the model folder beside its no-match default, and
copied into every catalogue that uses them.  Reading a model's axes or default storage needs
no model code (a catalogue build can run without JAX); only fitting fingerprints music.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nafp_jax.catalogue.storage import Storage, default_storage
from nafp_jax.catalogue.transform_coding import ROW_AXES_FILE, RowAxes, RowAxesError

if TYPE_CHECKING:
  from nafp_jax.inference.fingerprinter import Fingerprinter

DEFAULT_FILES = 120


def spread_sample(inputs: Sequence[str | os.PathLike], files: int) -> list[Path]:
  """Up to `files` audio files of `inputs`, chosen by a hash of their paths (so from across
  the folders, and the same whatever the order of listing)."""
  from nafp_jax.catalogue.identify import expand_inputs  # pylint: disable=g-import-not-at-top
  found = expand_inputs(inputs)
  ranked = sorted(found, key=lambda p: hashlib.sha1(str(p).encode()).hexdigest())
  return sorted(ranked[:files])


def fit_row_axes(fingerprinter: Fingerprinter, inputs: Sequence[str | os.PathLike],
                 files: int = DEFAULT_FILES, progress: bool = True) -> tuple[RowAxes, int]:
  """(the model's row axes, fingerprints they were fitted on) from up to `files` files;
  unusable files are skipped (and logged), a duplicate counts once."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.identify import fingerprint_files  # pylint: disable=g-import-not-at-top
  sample = spread_sample(inputs, files)
  if not sample:
    raise ValueError(f"{', '.join(map(str, inputs))}: no audio files to fit row axes on")
  rows, seen = [], set()
  for item in tqdm(fingerprint_files(fingerprinter, sample), total=len(sample),
                   unit="file", disable=not progress, desc="fingerprinting"):
    if item.fingerprints is not None and item.sha1 not in seen:
      seen.add(item.sha1)
      rows.append(item.fingerprints)
  if not rows:
    raise ValueError(f"{', '.join(map(str, inputs))}: none of {len(sample)} files could be "
                     "fingerprinted")
  fingerprints = np.concatenate(rows)
  return RowAxes.fit(fingerprints, fingerprinter.bundle.identity), int(fingerprints.shape[0])


def model_default_storage(model_folder: str | os.PathLike) -> Storage:
  """The storage of a new catalogue of the model in `model_folder`: transform-coded rows
  when the folder has row axes, else the default for models without them."""
  return default_storage((Path(model_folder) / ROW_AXES_FILE).is_file())


def read_model_row_axes(model_folder: str | os.PathLike, model_identity: str
                        ) -> RowAxes | None:
  """The row axes stored in a model folder, or None if it has none.

  RowAxesError if the file is unreadable or was fitted for another model (a model folder
  whose variables were replaced since)."""
  path = Path(model_folder) / ROW_AXES_FILE
  if not path.is_file():
    return None
  row_axes = RowAxes.load(path)
  if row_axes.model_identity != model_identity:
    raise RowAxesError(f"{path}: fitted for model {row_axes.model_identity[:12]}, not this "
                       f"folder's model {model_identity[:12]}; `nafp fit-row-axes` fits them again")
  return row_axes
