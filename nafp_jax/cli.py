"""`nafp`: index a catalogue, identify clips, list/remove tracks, calibrate, export, evaluate.

  nafp index DIR_OR_FILE... --db CAT [--model M] [--storage ROWS] [--code-bytes N]
  nafp query CLIP... --db CAT [--top K] [--json]
  nafp list --db CAT [--json]          nafp remove TRACK... --db CAT
  nafp convert --db CAT [--storage ROWS] [--code-bytes N]   (re-store the same fingerprints)
  nafp check --db CAT                  (verify every file and fingerprint)
  nafp calibrate NEGATIVE_AUDIO... --db CAT [--fpr 0.01]
  nafp calibrate-model MODEL MUSIC_FOLDER...   (the model's default no-match threshold)
  nafp fit-row-axes MODEL MUSIC_FOLDER...      (the axes the tc row formats round in)
  nafp export DIR... --out EXPORT [--process-index I --process-count P];  nafp import EXPORT --db CAT
  nafp import EXPORT --db CAT --searcher-later;  nafp build-searcher --db CAT   (bulk loading)
  nafp monitor RECORDING...|- --db CAT [--json] [--csv F] [--plot F.png]
  nafp serve --db CAT [--host 127.0.0.1 --port 8080]
  nafp eval --db CAT [--db CAT2 ...] [--queries N] [--clips DIR --truth TSV]
Exit status: 0 on success, 1 on a user error (message on stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import sys
from typing import Sequence

from nafp_jax.catalogue_commands import (add_catalogue_parsers, add_storage_options, print_threshold,
                                         requested_storage)
from nafp_jax.display import clock, printable
from nafp_jax.evaluation.command import add_eval_parser
from nafp_jax.stream_commands import add_stream_parsers



class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Descriptions as written (paragraphs kept); every option's default, where it has one."""

  def _get_help_string(self, action):
    help_text = action.help or ""
    if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in help_text:
      help_text += " (default: %(default)s)"
    return help_text


QUERY_HELP = """Identify clips: which catalogue track each is from, and where in it.

The score of a match is the mean cosine similarity of the clip's fingerprints with the
track's, aligned in time: 1 is identical; true matches of clean clips score about 0.9-1,
of noisy or reverberant ones less; clips of music that is not in the catalogue score
about 0.3-0.8, higher for shorter clips. A clip is a MATCH when its best score reaches the
catalogue's no-match threshold for its length. A new catalogue starts with the model's
default threshold (1% false positives on unknown music, measured when the model was made);
run `nafp calibrate` with audio of your own that is not in the catalogue to replace it.
Scores are comparable only between clips of equal length."""


def _load(args, need_catalogue: bool = True):
  from nafp_jax.catalogue.opening import load_catalogue_and_model  # pylint: disable=g-import-not-at-top
  return load_catalogue_and_model(args.db if need_catalogue else None,
                                  getattr(args, "model", None))


def _check_spread(fingerprinter, args) -> None:
  """Refuse a collapsed model (its fingerprints of different sounds all alike) unless
  --allow-collapsed; then only warn."""
  from nafp_jax.models import embedding_spread  # pylint: disable=g-import-not-at-top
  try:
    embedding_spread.check_model_spread(fingerprinter)
  except embedding_spread.CollapsedModelError as e:
    if not args.allow_collapsed:
      raise
    print(f"warning: {e}", file=sys.stderr)


def cmd_index(args) -> int:
  from nafp_jax.catalogue import storage as storage_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.service import CatalogueService  # pylint: disable=g-import-not-at-top
  from nafp_jax.models import embedding_spread  # pylint: disable=g-import-not-at-top
  db = Path(args.db).expanduser()
  try:  # a new catalogue's model is checked for collapse; an existing one's was at creation
    service = CatalogueService.open_or_create(db, args.model,
                                              requested_storage(args, args.model))
  except embedding_spread.CollapsedModelError as e:
    if not args.allow_collapsed:
      raise
    print(f"warning: {e}", file=sys.stderr)
    service = CatalogueService.open_or_create(db, args.model, requested_storage(args, args.model),
                                              allow_collapsed=True)
  if service.created:
    scheme = service.catalogue.storage_scheme
    untransformed = (args.storage is None
                     and scheme.rows == storage_lib.DEFAULT_WITHOUT_ROW_AXES.rows)
    print(f"new catalogue {db}: {scheme.describe()}" + (
        " (the model has no row axes; after `nafp fit-row-axes MODEL MUSIC`, `nafp convert` "
        f"re-stores it in the smaller {storage_lib.DEFAULT.rows} rows)" if untransformed else ""))
  if service.created and service.threshold is None:
    print(f"warning: the model has no default no-match threshold, so every query of {db} "
          "will be answered MATCH with its best track until you run `nafp calibrate --db "
          f"{db}` (or `nafp calibrate-model` on the model)", file=sys.stderr)
  elif service.created:
    print(f"no-match threshold: {service.threshold.describe()}; `nafp calibrate` replaces it "
          "with one measured for this catalogue")
  report = service.index(args.inputs, progress=not args.quiet)
  cat = service.catalogue
  for path, same in report.duplicates:
    print(f"{path}: already indexed (same content as {same}); nothing to do")
  for path, problem in report.skipped:
    print(f"skipped {path}: {problem}", file=sys.stderr)
  for warning in report.warnings:
    print(f"warning: {warning}", file=sys.stderr)
  hours = report.audio_seconds / 3600
  print(f"added {len(report.added)} track(s), {hours:.3f} h of audio in {report.wall_seconds:.1f} s; "
        f"{len(report.duplicates)} already present; {len(report.skipped)} skipped. "
        f"Catalogue: {cat.manifest['num_tracks']} tracks, {cat.manifest['num_rows']} fingerprints.")
  if cat.threshold is not None and cat.threshold.extrapolated(cat.hours):
    print(f"note: the no-match threshold was measured on catalogues of up to "
          f"{cat.threshold.reference_hours:.1f} h and is extrapolated to this one's "
          f"{cat.hours:.1f} h; `nafp calibrate --db {db}` measures it for this catalogue")
    refused = cat.threshold.refused_durations(cat.hours)
    if refused:
      print(f"warning: at {cat.hours:.1f} h the extrapolated threshold reaches 1.0 for clips of "
            f"up to {max(refused):g} s, so such clips are always answered NO MATCH until "
            f"`nafp calibrate --db {db}` measures this catalogue's own", file=sys.stderr)
  return 0


def cmd_export(args) -> int:
  import jax  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import export  # pylint: disable=g-import-not-at-top
  _, fingerprinter = _load(args, need_catalogue=False)
  _check_spread(fingerprinter, args)
  index = jax.process_index() if args.process_index is None else args.process_index
  count = jax.process_count() if args.process_count is None else args.process_count
  stats = export.export_share(fingerprinter, args.inputs, args.out, index, count)
  print(f"process {index}/{count}: exported {stats['tracks']} track(s) to {args.out}; "
        f"{stats['skipped']} skipped")
  return 0


def cmd_export_model(args) -> int:
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  bundle = load_encoder(args.model, args.step)
  _check_spread(Fingerprinter(bundle), args)
  folder = bundle.save(args.out, dtype=args.dtype)
  size = sum(p.stat().st_size for p in Path(folder).iterdir())
  print(f"exported {bundle.source} as {args.dtype} to {folder} ({size / 1e6:.2f} MB); "
        f"identity {load_encoder(folder).identity[:12]}")
  if args.calibration_audio:
    from nafp_jax.catalogue import calibration, no_match  # pylint: disable=g-import-not-at-top
    threshold = calibration.calibrate_model_default(Fingerprinter(load_encoder(folder)),
                                                    args.calibration_audio)
    no_match.write_model_default(folder, threshold)
    print_threshold(threshold)
  else:
    print(f"warning: {folder} has no default no-match threshold (no --calibration-audio): "
          "catalogues built with it answer MATCH for anything until calibrated; "
          f"`nafp calibrate-model {folder} MUSIC_FOLDER` adds one", file=sys.stderr)
  return 0


def cmd_import(args) -> int:
  from nafp_jax.catalogue import store as catalogue_lib, export  # pylint: disable=g-import-not-at-top
  manifest = export.read_manifest(args.export)
  db = Path(args.db).expanduser()
  if catalogue_lib.exists(db):
    cat = catalogue_lib.Catalogue(db)
    cat.check_model(manifest["model_identity"])
  else:
    from nafp_jax.catalogue import axes_fitting, storage as storage_lib  # pylint: disable=g-import-not-at-top
    storage = (requested_storage(args, manifest["model_source"])
               or axes_fitting.model_default_storage(manifest["model_source"]))
    row_axes = (axes_fitting.read_model_row_axes(manifest["model_source"],
                                                 manifest["model_identity"])
                if storage_lib.needs_row_axes(storage.rows) else None)
    cat = catalogue_lib.create(db, manifest["model_identity"], manifest["model_source"],
                               manifest["dim"], storage, row_axes=row_axes)
  known = {t.sha1 for t in cat.tracks}

  def new():
    for fields, fps in export.iter_export(args.export):
      if fields["sha1"] not in known:
        known.add(fields["sha1"])
        yield fields, fps

  cat = catalogue_lib.update(cat, add=new(), build_searcher=not args.searcher_later)
  print(f"catalogue {db}: {cat.manifest['num_tracks']} tracks, {cat.manifest['num_rows']} "
        "fingerprints" + (f"; searcher not built yet: `nafp build-searcher --db {db}`"
                          if cat.searcher_pending else ""))
  return 0


def cmd_query(args) -> int:
  import time  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.identify import identify  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  cat, fingerprinter = _load(args)
  load_s = time.perf_counter() - start
  results, failed = [], 0  # one entry per clip, in input order: a result or an error
  for clip in args.clips:
    try:
      wave = audio_io.load_audio(clip, allow_silent=True)
      results.append(identify(cat, fingerprinter, wave, str(clip), top=args.top, k=args.k,
                              phases=args.phases, backend=args.backend))
    except (audio_io.AudioDecodeError, ValueError) as e:
      message = str(e) if str(clip) in str(e) else f"{clip}: {e}"
      results.append({"query": str(clip), "error": message})
      failed += 1
  if args.json:
    print(json.dumps([r if isinstance(r, dict) else _result_json(cat, r, load_s)
                      for r in results], indent=2, allow_nan=False))
  else:
    if cat.threshold is None:
      print(f"note: {cat.root} has no no-match threshold: the best track is reported as MATCH "
            f"whatever its score; `nafp calibrate --db {cat.root}` sets one", file=sys.stderr)
    for r in results:
      if isinstance(r, dict):
        print(f"error: {r['error']}", file=sys.stderr)
      else:
        for warning in r.warnings:
          print(f"warning: {warning}", file=sys.stderr)
        _print_result(cat, r)
    print(f"{len(results)} clip(s) in {time.perf_counter() - start:.2f} s (loading model and "
          f"catalogue {load_s:.2f} s)")
  return 1 if failed else 0


def _result_json(cat, r, load_s: float) -> dict:
  from nafp_jax.catalogue.identify import result_json  # pylint: disable=g-import-not-at-top
  entry = result_json(cat, r)
  entry["timings_s"] = {"load": round(load_s, 4), **entry["timings_s"]}
  return entry


def _print_result(cat, r) -> None:
  verdict = "MATCH" if r.accepted else f"no match ({r.reason})"
  print(f"{r.query} ({r.duration_s:.2f} s): {verdict}")
  if r.threshold is not None and cat.threshold is not None:
    print(f"  threshold {r.threshold:.3f} for {r.duration_s:.1f} s ({cat.threshold.describe(cat.hours)})")
  if r.matches:
    print(f"  {'rank':>4}  {'score':>6}  {'votes':>5}  {'time':>9}  track")
    for i, m in enumerate(r.matches):
      t = cat.tracks[m.track]
      print(f"  {i + 1:>4}  {m.score:6.3f}  {m.votes:>5}  {clock(m.timestamp_s):>9}  "
            f"{printable(t.name)}")
  if r.timings_s:
    print(f"  {1000 * sum(r.timings_s.values()):.0f} ms (" + ", ".join(
        f"{k} {1000 * v:.0f} ms" for k, v in r.timings_s.items()) + ")")


def _add_allow_collapsed(p: argparse.ArgumentParser) -> None:
  p.add_argument("--allow-collapsed", action="store_true",
                 help="use a model whose fingerprints of different sounds are all nearly the "
                      "same (refused by default; a warning instead)")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="nafp", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)

  def add(name, func, help_text, description=None):
    p = sub.add_parser(name, help=help_text, description=description or help_text,
                       formatter_class=HelpFormatter)
    p.set_defaults(func=func)
    p.add_argument("--db", required=True, help="catalogue directory")
    return p

  p = add("index", cmd_index, "Fingerprint audio files/folders into a catalogue (created if new).")
  p.add_argument("inputs", nargs="+", help="audio files or folders (searched recursively)")
  p.add_argument("--model", help="training workdir or exported model (default: shipped model)")
  add_storage_options(p)
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  _add_allow_collapsed(p)

  p = add("query", cmd_query, "Identify clips: which track, and where in it.", QUERY_HELP)
  p.add_argument("clips", nargs="+", help="audio clips (any format, rate, channels)")
  p.add_argument("--model", help="must be the model the catalogue was built with (default: "
                 "the shipped model)")
  p.add_argument("--top", type=int, default=5, help="matches to show per clip")
  p.add_argument("--k", type=int, default=10, help="neighbours per query fingerprint")
  p.add_argument("--phases", type=int, default=10, help="10 ms sub-hop phases to try")
  p.add_argument("--backend", choices=["auto", "exact", "scann"], default="auto",
                 help="neighbour search: exact (brute force), scann, or auto (ScaNN for "
                      "catalogues of many fingerprints, exact for small ones)")
  p.add_argument("--json", action="store_true", help="machine-readable output: one entry per "
                 "clip, in input order, with the threshold applied and timings in seconds")

  p = sub.add_parser("export", help="Fingerprint files to sharded .npy files (this process's "
                     "share), for external search or `nafp import`.")
  p.set_defaults(func=cmd_export)
  p.add_argument("inputs", nargs="+", help="audio files or folders")
  p.add_argument("--out", required=True, help="export folder (shared by all processes)")
  p.add_argument("--model")
  p.add_argument("--process-index", type=int, help="default: jax.process_index()")
  p.add_argument("--process-count", type=int, help="default: jax.process_count()")
  _add_allow_collapsed(p)

  p = sub.add_parser("export-model", help="Write a training workdir's latest checkpoint (or "
                     "--step's) as a small inference model folder (config.json + "
                     "variables.msgpack).")
  p.set_defaults(func=cmd_export_model)
  p.add_argument("model", help="training workdir (or an exported model to convert)")
  p.add_argument("--out", required=True, help="new folder (must not exist)")
  p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
  p.add_argument("--step", type=int, help="the checkpoint to export (default: the latest)")
  p.add_argument("--calibration-audio", nargs="+", metavar="FOLDER",
                 help="music (one sub-folder per source, not evaluation audio) to measure the "
                      "model's default no-match threshold on, as `nafp calibrate-model` does")
  _add_allow_collapsed(p)

  p = add("import", cmd_import, "Build or extend a catalogue from an export folder (all shares).")
  p.add_argument("export", help="folder written by `nafp export`")
  add_storage_options(p)
  p.add_argument("--searcher-later", action="store_true",
                 help="write the fingerprints only and leave the ScaNN searcher for `nafp "
                      "build-searcher` (loading many exports: each import then costs only its "
                      "rows, and the searcher is trained once, on all of them)")

  add_catalogue_parsers(sub, add, HelpFormatter)
  add_stream_parsers(add)
  add_eval_parser(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Entry point of the `nafp` console script."""
  args = build_parser().parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from nafp_jax.inference.cpu_devices import split_cpu_into_devices  # pylint: disable=g-import-not-at-top
  split_cpu_into_devices()
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.WARNING)
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import ModelLoadError  # pylint: disable=g-import-not-at-top
  try:
    return args.func(args)
  except (catalogue_lib.CatalogueError, ModelLoadError, FileNotFoundError, FileExistsError,
          ValueError) as e:  # CollapsedModelError is a ValueError
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
