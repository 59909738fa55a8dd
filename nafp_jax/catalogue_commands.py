"""The `nafp` commands that look after a catalogue: list, check, remove, convert, calibrate,
and calibrate-model (a model's default no-match threshold).

Kept apart from nafp_jax/cli.py, which registers them through `add_catalogue_parsers`
and shares the storage options defined here with `index` and `import`.
"""

from __future__ import annotations

import argparse
import json
import sys

from nafp_jax.catalogue.storage import (CODE_BYTES, DEFAULT as DEFAULT_STORAGE,
                                       DEFAULT_WITHOUT_ROW_AXES, ROW_FORMATS, Storage,
                                       default_storage)
from nafp_jax.display import clock, printable


def add_storage_options(p: argparse.ArgumentParser) -> None:
  p.add_argument("--storage", choices=ROW_FORMATS,
                 help=f"row format of the fingerprints kept for exact scoring (a new catalogue: "
                      f"{DEFAULT_STORAGE.rows} if the model has row axes, else "
                      f"{DEFAULT_WITHOUT_ROW_AXES.rows})")
  p.add_argument("--code-bytes", type=int, choices=CODE_BYTES,
                 help=f"bytes of ScaNN search code per fingerprint (a new catalogue: "
                      f"{DEFAULT_STORAGE.code_bytes})")


def requested_storage(args, model_folder: str | None = None) -> Storage | None:
  """The storage --storage / --code-bytes ask for, or None when neither is given.  What is
  not given is the catalogue's own if it exists, else the default for the model in
  `model_folder` (None: the shipped model)."""
  from nafp_jax.catalogue import axes_fitting, store as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.shipped_model import model_path  # pylint: disable=g-import-not-at-top
  if args.storage is None and args.code_bytes is None:
    return None
  base = (catalogue_lib.Catalogue(args.db).storage_scheme if catalogue_lib.exists(args.db)
          else axes_fitting.model_default_storage(model_path(model_folder)))
  return Storage(args.storage or base.rows, args.code_bytes or base.code_bytes)


def _storage_summary(cat) -> str:
  mb_per_hour = cat.disk_bytes / 1e6 / max(cat.hours, 1e-9)
  return (f"{cat.storage_scheme.describe()}" + ("" if cat.code_bytes is not None else
                                                " (format 1: ScaNN keeps its own float32 copy)")
          + (f"; {cat.disk_bytes / 1e6:.1f} MB on disk, {mb_per_hour:.1f} MB per hour of audio"
             if cat.hours else ""))


def cmd_convert(args) -> int:
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.Catalogue(args.db)
  wanted = requested_storage(args) or _default_conversion(cat, args.model)
  if wanted == cat.storage_scheme and cat.code_bytes is not None:
    print(f"{cat.root}: already stores {wanted.describe()}; nothing to do")
    return 0
  before = _storage_summary(cat)
  cat = catalogue_lib.restore(cat, wanted, _model_row_axes(cat, wanted, args.model))
  print(f"{cat.root}: was {before}\n{' ' * len(str(cat.root))}  now {_storage_summary(cat)}")
  return 0


def _default_conversion(cat, model: str | None) -> Storage:
  """What `nafp convert` without --storage / --code-bytes converts to: the default storage,
  transform-coded when the catalogue or its model has row axes."""
  from nafp_jax.catalogue import axes_fitting  # pylint: disable=g-import-not-at-top
  if cat.row_axes is not None:
    return default_storage(True)
  return axes_fitting.model_default_storage(model or cat.manifest["model_source"])


def _model_row_axes(cat, wanted: Storage, model: str | None):
  """The model's row axes when `wanted` needs them and the catalogue has none of its own:
  from `model`, else from the folder of the model that built the catalogue."""
  from nafp_jax.catalogue import axes_fitting, storage as storage_lib  # pylint: disable=g-import-not-at-top
  if not storage_lib.needs_row_axes(wanted.rows) or cat.row_axes is not None:
    return None
  return axes_fitting.read_model_row_axes(model or cat.manifest["model_source"],
                                          cat.manifest["model_identity"])


def cmd_list(args) -> int:
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.Catalogue(args.db)
  if args.json:
    print(json.dumps({"manifest": cat.manifest,
                      "tracks": [t.__dict__ for t in cat.tracks]}, indent=2))
    return 0
  m = cat.manifest
  print(f"{cat.root}: {m['num_tracks']} tracks, {m['num_rows']} fingerprints, "
        f"model {m['model_identity'][:12]}")
  print(f"storage: {_storage_summary(cat)}")
  print(f"no-match threshold: " + (cat.threshold.describe(cat.hours) if cat.threshold else "none "
                                   "(every best match counts; `nafp calibrate` sets one)"))
  for t in cat.tracks:
    print(f"{t.id:>6}  {clock(t.duration):>9}  {t.row_count:>7} fp  {t.sha1[:10]}  "
          f"{printable(t.name)}")
  return 0


def cmd_check(args) -> int:
  from nafp_jax.catalogue.check import SEARCHER_NOT_BUILT, verify  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.searcher_build import SEARCHER_WORK  # pylint: disable=g-import-not-at-top
  cat, problems = verify(args.db)
  for problem in problems:
    print(f"problem: {problem}")
  if cat is not None:
    checked = len(cat.manifest.get("files", {}))
    print(f"{cat.root}: {cat.manifest['num_tracks']} tracks, {cat.manifest['num_rows']} "
          f"fingerprints, {checked} file checksum(s) verified: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
  harmless = (".gen-tmp-", ".spool-", "no checksums", SEARCHER_WORK, SEARCHER_NOT_BUILT)
  return 1 if problems and (cat is None or any(not p.startswith(harmless)
                                               for p in problems)) else 0


def cmd_build_searcher(args) -> int:
  import time  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.Catalogue(args.db)
  if not cat.searcher_pending:
    print(f"{cat.root}: has the searcher its {cat.manifest['num_rows']} fingerprints need; "
          "nothing to do")
    return 0
  start = time.perf_counter()
  cat = catalogue_lib.build_searcher(cat)
  print(f"{cat.root}: searcher of {cat.manifest['num_rows']} fingerprints built in "
        f"{time.perf_counter() - start:.1f} s")
  return 0


def cmd_remove(args) -> int:
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  try:  # no model needed: the catalogue alone
    cat, removed = catalogue_lib.remove_tracks(catalogue_lib.Catalogue(args.db), args.tracks)
  except catalogue_lib.MissingTracksError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"removed {len(removed)} track(s); {cat.manifest['num_tracks']} left")
  return 0


def cmd_calibrate(args) -> int:
  from nafp_jax.catalogue.service import CatalogueService  # pylint: disable=g-import-not-at-top
  if args.model_default and args.negatives:
    raise ValueError("give audio to measure on, or --model-default, not both")
  if not args.model_default and not args.negatives:
    raise ValueError("give audio that is not in the catalogue to measure on (or --model-default)")
  service = CatalogueService.open(args.db, args.model)
  if args.model_default:
    threshold = service.use_model_default_threshold()
    print(f"{service.catalogue.root}: no-match threshold set to "
          f"{threshold.describe(service.catalogue.hours)}")
    return 0
  threshold = service.calibrate(
      args.negatives, args.fpr, args.durations, args.clips, progress=not args.quiet,
      on_skip=lambda path, problem: print(f"skipped {path}: {problem}", file=sys.stderr))
  print_threshold(threshold)
  return 0


def cmd_calibrate_model(args) -> int:
  from nafp_jax.catalogue import calibration, no_match  # pylint: disable=g-import-not-at-top
  no_match.check_model_folder(args.model)  # before the work, not after it
  from nafp_jax.catalogue.opening import load_catalogue_and_model  # pylint: disable=g-import-not-at-top
  _, fingerprinter = load_catalogue_and_model(None, args.model)
  threshold = calibration.calibrate_model_default(
      fingerprinter, args.audio, args.fpr, args.durations, args.clips,
      args.reference_fraction, progress=not args.quiet)
  path = no_match.write_model_default(args.model, threshold)
  print_threshold(threshold)
  print(f"written to {path}; new catalogues built with this model start with it")
  return 0


def cmd_fit_row_axes(args) -> int:
  from nafp_jax.catalogue import axes_fitting, no_match  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.opening import load_catalogue_and_model  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.transform_coding import ROW_AXES_FILE  # pylint: disable=g-import-not-at-top
  folder = no_match.check_model_folder(args.model)  # before the work, not after it
  _, fingerprinter = load_catalogue_and_model(None, args.model)
  row_axes, rows = axes_fitting.fit_row_axes(fingerprinter, args.audio, args.files,
                                             progress=not args.quiet)
  path = row_axes.save(folder / ROW_AXES_FILE)
  share = row_axes.spread ** 2 / float(sum(row_axes.spread ** 2))
  print(f"row axes of model {fingerprinter.bundle.identity[:12]} fitted on {rows} fingerprints; "
        f"largest axis {100 * share[0]:.1f} % of the variance, "
        f"{int((share.cumsum() < 0.99).sum()) + 1} axes for 99 %")
  print(f"written to {path}; catalogues built with this model can now store tc rows")
  return 0


def print_threshold(threshold) -> None:
  print(f"no-match threshold ({threshold.describe()}):")
  for d, score, n in zip(threshold.durations_s, threshold.scores, threshold.negatives):
    print(f"  {d:5.1f} s clips: {score:.4f}  (from {n} non-catalogue clips)")


def _add_calibration_options(p: argparse.ArgumentParser) -> None:
  from nafp_jax.catalogue import calibration, no_match  # pylint: disable=g-import-not-at-top
  p.add_argument("--fpr", type=float, default=no_match.DEFAULT_FPR,
                 help="accepted false-positive rate: the fraction of clips of audio not in the "
                      "catalogue that may still be reported as a match")
  p.add_argument("--durations", type=_durations,
                 default=",".join(f"{d:g}" for d in no_match.DEFAULT_DURATIONS_S),
                 help="query durations to calibrate, seconds, comma-separated (a clip between "
                      "two gets an interpolated threshold)")
  p.add_argument("--clips", type=int, default=calibration.DEFAULT_CLIPS_PER_DURATION,
                 help="clips per duration (more: a steadier threshold, longer calibration)")
  p.add_argument("--quiet", action="store_true", help="no progress bar")


def _durations(text: str) -> tuple[float, ...]:
  try:
    values = tuple(sorted({float(v) for v in text.split(",") if v.strip()}))
  except ValueError:
    raise argparse.ArgumentTypeError(f"not a comma-separated list of seconds: {text!r}") from None
  if not values or values[0] < 1.0:
    raise argparse.ArgumentTypeError(f"durations must be at least 1 s (one fingerprint): {text!r}")
  return values


def add_catalogue_parsers(sub, add, formatter_class) -> None:
  """Register the commands on cli.py's subparsers (`add` makes one taking --db)."""
  p = add("convert", cmd_convert, "Re-store a catalogue's fingerprints in another storage "
          "(row format, search code size) without re-fingerprinting; atomic. With neither "
          f"--storage nor --code-bytes: the default storage ({DEFAULT_STORAGE.rows} rows if the "
          "catalogue or its model has row axes).")
  add_storage_options(p)
  p.add_argument("--model", help="model folder whose row axes a tc format rounds in (default: "
                 "the folder of the model that built the catalogue)")

  p = add("list", cmd_list, "List the tracks of a catalogue.")
  p.add_argument("--json", action="store_true")

  add("check", cmd_check, "Verify a whole catalogue: checksums of its files, every "
      "fingerprint, the track table, the searcher; exit 1 on damage.")

  add("build-searcher", cmd_build_searcher, "Build the ScaNN searcher of a catalogue loaded "
      "with `nafp import --searcher-later`. A large one is built in pieces of a million "
      "fingerprints: run again after an interruption, it goes on from the last finished piece.")

  p = add("remove", cmd_remove, "Remove tracks (by id, name, path or content hash).")
  p.add_argument("tracks", nargs="+")

  p = add("calibrate", cmd_calibrate,
          "Replace the catalogue's no-match threshold by one measured on audio that is NOT in "
          "the catalogue (music of the kind users will query, ideally minutes of it).")
  p.add_argument("negatives", nargs="*", help="audio files/folders not in the catalogue")
  p.add_argument("--model")
  p.add_argument("--model-default", action="store_true",
                 help="set the model's default threshold instead of measuring one (for a "
                      "catalogue made before its model had one)")
  _add_calibration_options(p)

  p = sub.add_parser("calibrate-model", help="Measure a model's default no-match threshold and "
                     "store it in the model folder.", description=
                     "Measure a model's default no-match threshold, which every catalogue built "
                     "with the model starts with. The music given is split by top-level "
                     "sub-folder into a reference catalogue and held-out clips, so no clip comes "
                     "from a source in the reference. Do not use evaluation audio.",
                     formatter_class=formatter_class)
  p.set_defaults(func=cmd_calibrate_model)
  p.add_argument("model", help="exported model folder (see export-model)")
  p.add_argument("audio", nargs="+", help="folders of music, one sub-folder per album or source")
  p.add_argument("--reference-fraction", type=float, default=0.5,
                 help="share of the sources indexed as the reference catalogue")
  _add_calibration_options(p)

  from nafp_jax.catalogue import axes_fitting  # pylint: disable=g-import-not-at-top
  p = sub.add_parser("fit-row-axes", help="Fit the principal axes the tc row formats round in "
                     "and store them in the model folder.", description=
                     "Fingerprint music with the model and store the principal axes of its "
                     "fingerprints in the model folder: the transform-coded row formats "
                     "(--storage tc82/tc74/tc66) round each fingerprint in them. Use music of "
                     "the kind the model was trained on, not evaluation audio.",
                     formatter_class=formatter_class)
  p.set_defaults(func=cmd_fit_row_axes)
  p.add_argument("model", help="exported model folder (see export-model)")
  p.add_argument("audio", nargs="+", help="folders or files of music")
  p.add_argument("--files", type=int, default=axes_fitting.DEFAULT_FILES,
                 help="files fingerprinted, chosen across the folders")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
