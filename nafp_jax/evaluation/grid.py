"""The evaluation API: score (catalogue, model) methods on a grid of distorted query sets.

    from nafp_jax.evaluation import grid, query_sets
    methods = [grid.open_method("my_catalogue")]          # the shipped model
    settings = grid.GridSettings(queries=100, lengths=(1.0, 3.0), noise="folder:noise/")
    rows = grid.evaluate(methods, query_sets.paper_conditions(), settings, "results/")
    grid.write_report(rows, "results/")

Queries are cut from the first method's catalogue tracks at seeded random moments and
distorted per condition (evaluation/query_sets.py); every method answers the same
queries.  Each finished (condition, length) cell is journalled in the results folder, so
a rerun with the same settings resumes where the last one stopped.  `nafp eval`,
`nafp dev-score` and the demo are front ends of this module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from nafp_jax.catalogue.store import Catalogue
from nafp_jax.evaluation import protocol, query_sets, report
from nafp_jax.evaluation.journal import Journal
from nafp_jax.inference.encoder_bundle import load_encoder
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.inference.shipped_model import model_path

# Held-out evaluation rooms are drawn with this seed plus the grid's seed: never a
# training seed.
HELD_OUT_ROOMS_SEED = 1000


@dataclasses.dataclass(frozen=True)
class GridSettings:
  """How the queries of every cell are made and searched.

  queries: per (condition, length) cell.  noise: a noise source spec (folder:PATH,
  synthetic:NxS, ...).  rirs_per_t60: rooms drawn per reverberation time.  phases:
  sub-hop phases searched per query.  backend: 'auto', 'exact' or 'scann'.  restart:
  discard the journalled cells instead of resuming.
  """
  queries: int = 1000
  lengths: Sequence[float] = query_sets.LENGTHS_S
  noise: str = "synthetic:8x20"
  rirs_per_t60: int = 20
  phases: int = 10
  backend: str = "auto"
  seed: int = 0
  restart: bool = False
  progress: bool = True


def open_method(catalogue: str | Path, model: str | Path | None = None,
                label: str | None = None) -> protocol.Method:
  """A catalogue with the model that built it (default: the shipped model).

  Raises CatalogueError when the catalogue was built by another model.
  """
  cat = Catalogue(catalogue)
  bundle = load_encoder(model_path(model))
  cat.check_model(bundle.identity)
  return protocol.Method(label or Path(catalogue).name, cat, Fingerprinter(bundle))


def load_rirs(conditions: Sequence[query_sets.Condition], rirs_per_t60: int,
              seed: int) -> dict[tuple[str, float], list[np.ndarray]]:
  """{(room family, T60): [RIR, ...]} for every reverberant condition (built once, cached)."""
  from input_pipeline import sources  # pylint: disable=g-import-not-at-top
  rirs = {}
  for family, t60 in sorted({(c.room_family, c.t60_s) for c in conditions if c.t60_s is not None}):
    if family == query_sets.PAPER_ROOMS:
      spec, rir_seed = f"simulated:{rirs_per_t60}", seed
    else:
      spec, rir_seed = f"held-out-rooms:{rirs_per_t60}", HELD_OUT_ROOMS_SEED + seed
    bank = sources.load_bank(sources.prepare(spec, "rirs", rir_t60_range=(t60, t60),
                                             rir_seed=rir_seed), "train", key="rir")
    rirs[(family, t60)] = [np.asarray(bank.waveform(i)) for i in range(len(bank))]
  return rirs


def evaluate(methods: Sequence[protocol.Method], conditions: Sequence[query_sets.Condition],
             settings: GridSettings, out: str | Path) -> list[dict]:
  """One row per (method, condition, length): query count and segment/audio hit rates.

  Raises journal.JournalMismatchError when `out` holds cells of other settings (and
  `settings.restart` is false).
  """
  from input_pipeline import sources  # pylint: disable=g-import-not-at-top
  waves, hashes = protocol.load_catalogue_tracks(methods[0].catalogue)
  noise = sources.load_bank(sources.prepare(settings.noise, "noise"), "train")
  rirs = load_rirs(conditions, settings.rirs_per_t60, settings.seed)
  journal_settings = {
      "methods": [{"label": m.label, "model_identity": m.fingerprinter.bundle.identity,
                   "catalogue": str(m.catalogue.root.resolve()),
                   "generation": m.catalogue.generation.name,
                   "fingerprints": int(m.catalogue.matrix.shape[0]),
                   "fingerprint_version": m.catalogue.fingerprint_version}
                  for m in methods],
      "queries": settings.queries, "seed": settings.seed, "phases": settings.phases,
      "backend": settings.backend, "noise": settings.noise,
      "rirs_per_t60": settings.rirs_per_t60}
  journal = Journal(Path(out), journal_settings, restart=settings.restart)
  return protocol.run_protocol(methods, waves, hashes, noise, rirs, conditions,
                               list(settings.lengths), settings.queries, settings.seed,
                               settings.phases, settings.backend, progress=settings.progress,
                               journal=journal)


def write_report(rows: list[dict], out: str | Path) -> list[Path]:
  """Write hit_rates.csv, hit_rates.md (beside the paper's figures) and the plots to `out`;
  return the paths written."""
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  report.write_csv(rows, out / "hit_rates.csv")
  (out / "hit_rates.md").write_text(report.format_markdown(rows))
  return [out / "hit_rates.csv", out / "hit_rates.md", *report.plot(rows, out)]
