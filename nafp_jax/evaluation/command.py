"""The `nafp eval` subcommand: its arguments and how it runs the paper's protocol.

Separate from the catalogue commands in nafp_jax/cli.py because it assembles a
whole experiment (methods, distorted query sets, a resumable journal, tables and
plots) from the modules of this package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nafp_jax.shipped_model import model_path


def _floats(text: str) -> list[float]:
  try:
    return [float(x) for x in text.split(",") if x]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def run_eval(args: argparse.Namespace) -> int:
  """Run `nafp eval`: build one Method per --db, cut or read the queries, write the tables."""
  from nafp_jax import catalogue as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation import protocol, query_sets, report  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation.journal import Journal, JournalMismatchError  # pylint: disable=g-import-not-at-top
  from nafp_jax.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  dbs = args.db
  models = args.model or [None] * len(dbs)
  if len(models) != len(dbs):
    raise SystemExit("error: give one --model per --db (or none for the shipped model)")
  labels = args.label or [Path(d).name for d in dbs]
  methods = []
  for db, model, label in zip(dbs, models, labels):
    cat = catalogue_lib.Catalogue(db)
    bundle = load_encoder(model_path(model))
    cat.check_model(bundle.identity)
    methods.append(protocol.Method(label, cat, Fingerprinter(bundle)))
  out = Path(args.out)
  if args.clips:
    if not args.truth:
      raise SystemExit("error: --clips needs --truth TSV (query, track, start_s)")
    rows = protocol.run_clip_directory(methods, Path(args.clips), Path(args.truth), args.phases,
                                       args.backend)
  else:
    from input_pipeline import sources  # pylint: disable=g-import-not-at-top
    waves, hashes = protocol.load_catalogue_tracks(methods[0].catalogue)
    noise = sources.load_bank(sources.prepare(args.noise, "noise"), "train")
    conditions = query_sets.paper_conditions(args.snrs, args.t60s, args.noise_reverb_t60)
    if args.conditions:
      conditions = [c for c in conditions if c.kind in args.conditions.split(",")]
    rirs_by_t60 = {}
    for t60 in sorted({c.t60_s for c in conditions if c.t60_s is not None}):
      bank = sources.load_bank(sources.prepare(f"simulated:{args.rirs_per_t60}", "rirs",
                                               rir_t60_range=(t60, t60), rir_seed=args.seed),
                               "train", key="rir")
      rirs_by_t60[t60] = [np.asarray(bank.waveform(i)) for i in range(len(bank))]
    settings = {"methods": [{"label": m.label, "model_identity": m.fingerprinter.bundle.identity,
                             "catalogue": str(m.catalogue.root.resolve()),
                             "generation": m.catalogue.generation.name,
                             "fingerprints": int(m.catalogue.matrix.shape[0]),
                             "fingerprint_version": m.catalogue.fingerprint_version}
                            for m in methods],
                "queries": args.queries, "seed": args.seed, "phases": args.phases,
                "backend": args.backend, "noise": args.noise, "rirs_per_t60": args.rirs_per_t60}
    try:
      journal = Journal(out, settings, restart=args.restart)
    except JournalMismatchError as e:
      raise SystemExit(f"error: {e}") from None
    rows = protocol.run_protocol(methods, waves, hashes, noise, rirs_by_t60, conditions,
                                 args.lengths, args.queries, args.seed, args.phases, args.backend,
                                 progress=not args.quiet, journal=journal)
  print(report.format_tables(rows))
  report.write_csv(rows, out / "hit_rates.csv")
  (out / "hit_rates.md").write_text(report.format_markdown(rows))
  plots = report.plot(rows, out)
  print(f"wrote {out / 'hit_rates.csv'}, {out / 'hit_rates.md'} (beside the paper's figures)" +
        "".join(f", {p}" for p in plots))
  return 0


def add_eval_parser(sub: argparse._SubParsersAction) -> None:  # pylint: disable=protected-access
  """Register `eval` on the `nafp` parser's subcommands."""
  p = sub.add_parser("eval", help="Paper-protocol evaluation: segment- and audio-level hit rates.",
                     description="Cut distorted queries from the catalogue's tracks (or read "
                     "pre-made clips with a truth TSV), identify them, print the hit-rate tables, "
                     "write hit_rates.csv, hit_rates.md (beside the paper's reported figures) "
                     "and PNG plots.")
  p.set_defaults(func=run_eval)
  p.add_argument("--db", action="append", required=True, help="catalogue (repeat per method)")
  p.add_argument("--model", action="append", help="model per --db (default: shipped model)")
  p.add_argument("--label", action="append", help="method name per --db")
  p.add_argument("--queries", type=int, default=1000, help="queries per condition and length")
  p.add_argument("--lengths", type=_floats, default=[0.96, 2.0, 3.0, 5.0])
  p.add_argument("--snrs", type=_floats, default=[0.0, 5.0, 10.0, 15.0, 20.0])
  p.add_argument("--t60s", type=_floats, default=[0.2, 0.4, 0.5, 0.7, 0.8])
  p.add_argument("--noise-reverb-t60", type=float, default=0.5)
  p.add_argument("--conditions", help="subset of noise,reverb,noise+reverb")
  p.add_argument("--noise", default="synthetic:8x20", help="noise source spec (folder:PATH, ...)")
  p.add_argument("--rirs-per-t60", type=int, default=20, help="simulated rooms per T60")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--phases", type=int, default=10)
  p.add_argument("--backend", choices=["auto", "exact", "scann"], default="auto")
  p.add_argument("--clips", help="folder of pre-made query clips")
  p.add_argument("--truth", help="TSV with header query<TAB>track<TAB>start_s")
  p.add_argument("--out", default="nafp_eval",
                 help="folder for hit_rates.csv, plots and journal.jsonl (finished cells: a rerun "
                 "with the same settings resumes from it)")
  p.add_argument("--restart", action="store_true",
                 help="discard the results journalled in --out and run every cell again")
  p.add_argument("--quiet", action="store_true")
