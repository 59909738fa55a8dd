"""The model and the live catalogue of a running service, and catalogue switching.

Requests are answered by `QueryEngine.identify` from one catalogue generation at a
time.  A background thread (`watch`) notices when `nafp index`/`remove`/`calibrate`
publishes a new generation, opens it completely (track table, matrix, searcher)
and only then hands it to the engine, which swaps it in between two batches: no
request is served from a half-loaded catalogue and none waits for the load.  A
generation built by another model is refused and the old one kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
import threading
import time
from typing import Sequence

from absl import logging
import numpy as np

from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.inference.fingerprinter import Fingerprinter, QueryTooShortError
from nafp_jax.catalogue.identify import Identification, identify_batch


class QueryEngine:
  """Answers batches of clips against the live catalogue; switches generations safely."""

  def __init__(self, db: str | Path, fingerprinter: Fingerprinter, k: int = 10, phases: int = 10,
               backend: str = "auto"):
    self.root = Path(db).expanduser()
    self.fingerprinter = fingerprinter
    self.k, self.phases, self.backend = k, phases, backend
    self.catalogue = self._open()
    self._next: catalogue_lib.Catalogue | None = None
    self._lock = threading.Lock()
    self.switches = 0
    self.refused: str | None = None  # why the latest new generation was not taken
    self.refusals = 0
    self._refused_generation: str | None = None

  def _open(self) -> catalogue_lib.Catalogue:
    cat = catalogue_lib.Catalogue(self.root)
    cat.check_model(self.fingerprinter.bundle.identity)
    cat.neighbor_index(self.backend)  # load the searcher now, not on the first request
    return cat

  @property
  def generation(self) -> str:
    return self.catalogue.generation.name

  def identify(self, waves: Sequence[np.ndarray], names: Sequence[str], tops: Sequence[int]
               ) -> tuple[catalogue_lib.Catalogue, list[Identification | QueryTooShortError]]:
    """One batch, all from the same catalogue generation (the newest fully loaded one),
    which is returned with the answers: their track numbers index its track table."""
    with self._lock:
      if self._next is not None:
        self.catalogue, self._next = self._next, None
        self.switches += 1
        logging.warning("serving catalogue generation %s", self.generation)
      cat = self.catalogue
    results = identify_batch(cat, self.fingerprinter, waves, names, top=max(tops), k=self.k,
                             phases=self.phases, backend=self.backend)
    for i, (r, top) in enumerate(zip(results, tops)):
      if isinstance(r, Identification) and len(r.matches) > top:
        results[i] = dataclasses.replace(r, matches=r.matches[:top])
    return cat, results

  def check_for_new_generation(self) -> bool:
    """Open a newly published generation and queue it for the next batch; True if one was."""
    current = (self.root / "CURRENT").read_text().strip()
    with self._lock:
      known = {self.catalogue.generation.name} | (
          {self._next.generation.name} if self._next else set())
    if current in known or current == self._refused_generation:
      return False
    try:
      cat = self._open()
    except catalogue_lib.CatalogueError as e:
      self._refused_generation = current
      self.refused = f"generation {current} not served: {e}"
      self.refusals += 1
      logging.error("%s", self.refused)
      return False
    with self._lock:
      self._next = cat
    self.refused = None
    return True

  def watch(self, stop: threading.Event, interval_s: float = 1.0) -> None:
    """Poll for new generations until `stop` is set (run on a daemon thread)."""
    while not stop.wait(interval_s):
      try:
        self.check_for_new_generation()
      except Exception as e:  # pylint: disable=broad-except  (the service must keep serving)
        logging.error("checking %s for a new generation failed: %s", self.root, e)
        time.sleep(interval_s)
