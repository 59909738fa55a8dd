"""One-command demo on real music: fetch the DEV split, index it, identify distorted queries.

  python -m nafp_jax.demo [--model M] [--queries 50] [--lengths 3]

1. fetches the open corpus's DEV and noise packages (docs/data.md; cached, a no-op the second time),
2. indexes every DEV track with the model into
   $NAFP_CACHE/demo/dev_catalogue-<model id>-v<fingerprint version>,
3. cuts distorted queries (noise, reverb, noise+reverb) from random positions and prints the
   segment- and audio-level hit-rate tables, with CSV and plots in --out.

It drives the system through its Python API (catalogue/service.py, evaluation/grid.py).
"""

from __future__ import annotations

import argparse
import sys
import time

from input_pipeline import open_corpus
from input_pipeline.sources import cache_root
from nafp_jax.inference import shipped_model
from nafp_jax.catalogue.store import FINGERPRINT_VERSION
from nafp_jax.inference.cpu_devices import split_cpu_into_devices
from nafp_jax.inference.encoder_bundle import load_encoder


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m nafp_jax.demo", description=__doc__.split("\n")[0])
  parser.add_argument("--model", help="default: the shipped model")
  parser.add_argument("--queries", type=int, default=50, help="queries per condition and length")
  parser.add_argument("--lengths", default="3", help="query lengths in seconds, comma-separated")
  parser.add_argument("--packages", help="subset of DEV packages (default: all)")
  parser.add_argument("--out", default=None,
                      help="results folder (default: $NAFP_CACHE/demo/results-<catalogue>)")
  parser.add_argument("--restart", action="store_true",
                      help="discard the results folder's finished cells (after changing options)")
  args = parser.parse_args(argv)
  try:
    lengths = tuple(float(x) for x in args.lengths.split(",") if x)
  except ValueError:
    parser.error(f"--lengths: expected comma-separated seconds, got {args.lengths!r}")
  start = time.time()
  cache = cache_root()
  root = open_corpus.corpus_root(cache)
  dev_packages = args.packages.split(",") if args.packages else None
  if open_corpus.fetch(cache, {"dev"}, dev_packages) or open_corpus.fetch(cache, {"noise"}):
    print("warning: some packages failed to download; continuing with what is there",
          file=sys.stderr)
  split_cpu_into_devices()  # before anything starts JAX's backend (loading the model does)
  identity = load_encoder(shipped_model.model_path(args.model)).identity
  # One catalogue per model and fingerprint convention: a catalogue refuses any other.
  db = cache / "demo" / f"dev_catalogue-{identity[:12]}-v{FINGERPRINT_VERSION}"
  out = args.out or str(cache / "demo" / f"results-{db.name}")
  folders = ([str(root / "dev" / p) for p in dev_packages] if dev_packages
             else [str(root / "dev")])
  from nafp_jax.catalogue.service import CatalogueService  # pylint: disable=g-import-not-at-top
  service = CatalogueService.open_or_create(db, args.model)
  indexed = service.index(folders, progress=True)
  for path, problem in indexed.skipped:
    print(f"skipped {path}: {problem}", file=sys.stderr)
  print(f"catalogue {db}: {len(service.tracks)} tracks ({len(indexed.added)} added in "
        f"{indexed.wall_seconds:.1f} s, {len(indexed.duplicates)} already there)")
  from nafp_jax.evaluation import grid, query_sets, report  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation.journal import JournalMismatchError  # pylint: disable=g-import-not-at-top
  settings = grid.GridSettings(queries=args.queries, lengths=lengths,
                               noise=f"folder:{root / 'noise'}", restart=args.restart)
  try:
    rows = grid.evaluate([grid.open_method(db, args.model, "nafp-jax")],
                         query_sets.paper_conditions(), settings, out)
  except JournalMismatchError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(report.format_tables(rows))
  print("wrote " + ", ".join(str(p) for p in grid.write_report(rows, out)))
  print(f"demo finished in {(time.time() - start) / 60:.1f} min")
  return 0


if __name__ == "__main__":
  sys.exit(main())
