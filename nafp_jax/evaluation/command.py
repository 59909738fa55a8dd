"""The `nafp eval`, `nafp dev-score` and `nafp eval-monitor` subcommands: their arguments.

The command line's front end of the evaluation API (evaluation/grid.py) and of the
broadcast-monitoring score (evaluation/monitor_eval.py): it turns flags into their
settings and prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from nafp_jax.inference.shipped_model import model_path


def _floats(text: str) -> list[float]:
  try:
    return [float(x) for x in text.split(",") if x]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _methods(args: argparse.Namespace) -> list:
  """One protocol.Method per --db, each with its --model (default: the shipped model)."""
  from nafp_jax.evaluation import grid  # pylint: disable=g-import-not-at-top
  dbs = args.db
  models = args.model or [None] * len(dbs)
  if len(models) != len(dbs):
    raise SystemExit("error: give one --model per --db (or none for the shipped model)")
  labels = args.label or [None] * len(dbs)
  return [grid.open_method(db, model, label) for db, model, label in zip(dbs, models, labels)]


def selected_conditions(args: argparse.Namespace) -> list:
  """The conditions --conditions names: families ('paper', 'rooms') and/or kinds."""
  from nafp_jax.evaluation import query_sets  # pylint: disable=g-import-not-at-top
  def given(value, default):
    return default if value is None else value
  paper = query_sets.paper_conditions(given(args.snrs, query_sets.SNRS_DB),
                                      given(args.t60s, query_sets.T60S_S),
                                      given(args.noise_reverb_t60, query_sets.NOISE_REVERB_T60_S))
  rooms = query_sets.rooms_conditions(given(args.room_t60s, query_sets.ROOMS_T60S_S),
                                      given(args.room_snr, query_sets.ROOMS_SNR_DB),
                                      given(args.device_t60s, query_sets.DEVICE_T60S_S))
  device_t60s = given(args.device_t60s, query_sets.DEVICE_T60S_S)
  stages = query_sets.unseen_stage_conditions(device_t60s)
  unseen = query_sets.unseen_device_conditions(device_t60s) + stages
  out = []
  for name in (args.conditions or "paper").split(","):
    if name == "paper":
      out += paper
    elif name == "rooms":
      out += rooms
    elif name == "unseen-stages":
      out += stages
    elif name in query_sets.ALL_KINDS:
      out += [c for c in paper + rooms + unseen if c.kind == name]
    else:
      raise SystemExit(f"error: unknown condition {name!r} in --conditions (families: paper, "
                       f"rooms, unseen-stages; kinds: {', '.join(query_sets.ALL_KINDS)})")
  return list(dict.fromkeys(out))


def _run_grid(methods, conditions, lengths, queries: int, args: argparse.Namespace) -> list[dict]:
  """grid.evaluate with the settings of the command line; writes and prints the report."""
  from nafp_jax.evaluation import grid  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation.journal import JournalMismatchError  # pylint: disable=g-import-not-at-top
  settings = grid.GridSettings(queries=queries, lengths=tuple(lengths), noise=args.noise,
                               rirs_per_t60=args.rirs_per_t60, phases=args.phases,
                               backend=args.backend, seed=args.seed, restart=args.restart,
                               progress=not args.quiet)
  try:
    rows = grid.evaluate(methods, conditions, settings, args.out)
  except JournalMismatchError as e:
    raise SystemExit(f"error: {e}") from None
  _print_report(rows, grid.write_report(rows, args.out))
  return rows


def _print_report(rows: list[dict], written: list[Path]) -> None:
  from nafp_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  print(report.format_tables(rows))
  print(f"wrote {written[0]}, {written[1]} (beside the paper's figures)" +
        "".join(f", {p}" for p in written[2:]))


def run_eval(args: argparse.Namespace) -> int:
  """Run `nafp eval`: build one Method per --db, cut or read the queries, write the tables."""
  from nafp_jax.evaluation import grid, protocol  # pylint: disable=g-import-not-at-top
  methods = _methods(args)
  if args.clips:
    if not args.truth:
      raise SystemExit("error: --clips needs --truth TSV (query, track, start_s)")
    rows = protocol.run_clip_directory(methods, Path(args.clips), Path(args.truth), args.phases,
                                       args.backend)
    _print_report(rows, grid.write_report(rows, args.out))
  else:
    from nafp_jax.evaluation import query_sets  # pylint: disable=g-import-not-at-top
    _run_grid(methods, selected_conditions(args), args.lengths or query_sets.LENGTHS_S,
              args.queries, args)
  return 0


def run_dev_score(args: argparse.Namespace) -> int:
  """Run `nafp dev-score`: the fixed cells of evaluation/dev_score.py, one summary line each."""
  import json  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation import dev_score  # pylint: disable=g-import-not-at-top
  methods = _methods(args)
  args.seed = dev_score.SEED
  rows = _run_grid(methods, list(dev_score.CONDITIONS), dev_score.LENGTHS_S, dev_score.QUERIES,
                   args)
  summary = dev_score.summarize(rows)
  (Path(args.out) / "dev_score.json").write_text(json.dumps(summary, indent=2) + "\n")
  for line in dev_score.summary_lines(summary):
    print(line)
  return 0


def _add_common(p: argparse.ArgumentParser) -> None:
  p.add_argument("--db", action="append", required=True, help="catalogue (repeat per method)")
  p.add_argument("--model", action="append", help="model per --db (default: shipped model)")
  p.add_argument("--label", action="append", help="method name per --db")
  p.add_argument("--noise", default="synthetic:8x20", help="noise source spec (folder:PATH, ...)")
  p.add_argument("--rirs-per-t60", type=int, default=20, help="simulated rooms per T60")
  p.add_argument("--phases", type=int, default=10)
  p.add_argument("--backend", choices=["auto", "exact", "scann"], default="auto")
  p.add_argument("--restart", action="store_true",
                 help="discard the results journalled in --out and run every cell again")
  p.add_argument("--quiet", action="store_true")


def add_eval_parser(sub: argparse._SubParsersAction) -> None:  # pylint: disable=protected-access
  """Register `eval` on the `nafp` parser's subcommands."""
  p = sub.add_parser("eval", help="Paper-protocol evaluation: segment- and audio-level hit rates.",
                     description="Cut distorted queries from the catalogue's tracks (or read "
                     "pre-made clips with a truth TSV), identify them, print the hit-rate tables, "
                     "write hit_rates.csv, hit_rates.md (beside the paper's reported figures) "
                     "and PNG plots.")
  p.set_defaults(func=run_eval)
  _add_common(p)
  p.add_argument("--queries", type=int, default=1000, help="queries per condition and length")
  p.add_argument("--lengths", type=_floats, help="query lengths, s (default: the paper's)")
  p.add_argument("--snrs", type=_floats, help="noise SNRs, dB (default: the paper's)")
  p.add_argument("--t60s", type=_floats, help="reverb T60s, s (default: the paper's)")
  p.add_argument("--noise-reverb-t60", type=float,
                 help="T60 of the noise+reverb rooms, s (default: the paper's)")
  p.add_argument("--conditions",
                 help="comma-separated families and/or kinds: 'paper' (the default: noise, reverb, "
                 "noise+reverb with --snrs/--t60s), 'rooms' (room, room+noise, device: held-out "
                 "rooms at --room-t60s, noise at --room-snr, the loudspeaker-and-microphone chain "
                 "in rooms of --device-t60s); the kind 'unseen-device' (in no family: held-out "
                 "rooms of --device-t60s recorded through a chain training never applies) and "
                 "'unseen-stages' (on the same clips: that room alone, each stage of the chain "
                 "alone and each left out, 'unseen-device:none', ':clip', ':-clip', ...)")
  p.add_argument("--room-t60s", type=_floats, help="T60s of the rooms family, s (default: "
                 "evaluation/query_sets.py)")
  p.add_argument("--room-snr", type=float, help="SNR of room+noise, dB (default: "
                 "evaluation/query_sets.py)")
  p.add_argument("--device-t60s", type=_floats, help="T60s of the device chain's rooms, s "
                 "(default: evaluation/query_sets.py)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--clips", help="folder of pre-made query clips")
  p.add_argument("--truth", help="TSV with header query<TAB>track<TAB>start_s")
  p.add_argument("--out", default="nafp_eval",
                 help="folder for hit_rates.csv, plots and journal.jsonl (finished cells: a rerun "
                 "with the same settings resumes from it)")

  p = sub.add_parser("dev-score", help="The quick fixed DEV score: 22 cells of both condition "
                     "families, one summary line per method.",
                     description="Run the fixed cells of nafp_jax/evaluation/dev_score.py "
                     "(200 queries each, 1 and 3 s) and print the mean segment- and audio-level "
                     "hit rate of the paper family and of the rooms family; writes hit_rates.csv, "
                     "dev_score.json and the tables to --out (a rerun resumes).")
  p.set_defaults(func=run_dev_score)
  _add_common(p)
  p.add_argument("--out", default="nafp_dev_score", help="folder for the results")

  p = sub.add_parser("eval-monitor", help="Score `nafp monitor` on reproducible synthetic "
                     "broadcasts built from the catalogue's tracks.",
                     description="Build --programmes synthetic broadcasts of --minutes each "
                     "(catalogue excerpts with jumps and crossfades, music not in the catalogue, "
                     "speech, noise; optionally reverb and noise over all), monitor them, and "
                     "print precision, recall, F1, boundary and offset errors, false alarms per "
                     "hour of unknown audio and the real-time factor (nafp_jax/evaluation/"
                     "monitor_eval.py); writes results.json, a CSV and a PNG per programme.")
  p.set_defaults(func=run_eval_monitor)
  p.add_argument("--db", required=True, help="catalogue the excerpts are cut from")
  p.add_argument("--model", help="the catalogue's model (default: the shipped model)")
  p.add_argument("--unknown", help="folder of music NOT in the catalogue")
  p.add_argument("--speech", help="folder of speech recordings")
  p.add_argument("--noise", help="folder of noise recordings")
  p.add_argument("--programmes", type=int, default=2)
  p.add_argument("--minutes", type=float, default=10.0, help="length of each programme")
  p.add_argument("--snr", type=float, help="noise over the whole programme at this SNR (dB)")
  p.add_argument("--t60", type=float, help="a held-out room of this T60 (s) over the programme")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--files-per-folder", type=int, default=40,
                 help="files read from each of --unknown, --speech, --noise")
  p.add_argument("--window-s", type=float, default=5.0)
  p.add_argument("--hop-s", type=float, default=1.0)
  p.add_argument("--frame-step", type=int, default=2,
                 help="sub-hop phases every this many 10 ms frames (10: one phase, fastest)")
  p.add_argument("--block-s", type=float, default=5.0,
                 help="audio handed to the monitor at a time (0.5: as `nafp monitor -` reads "
                 "live input; sets the resolution of the latency figure)")
  p.add_argument("--out", default="nafp_eval_monitor", help="folder for the results")


def _folder_waves(folder: str | None, limit: int, seed: int) -> list[np.ndarray]:
  """Up to `limit` decodable files of a folder (a seeded choice), 16 kHz mono."""
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  if not folder:
    return []
  files = audio_io.find_audio_files(Path(folder).expanduser())
  rng = np.random.default_rng(seed)
  waves = []
  for i in rng.permutation(len(files)):
    try:
      waves.append(audio_io.load_audio(files[i]))
    except audio_io.AudioDecodeError:
      continue
    if len(waves) == limit:
      break
  return waves


def run_eval_monitor(args: argparse.Namespace) -> int:
  """Run `nafp eval-monitor`."""
  import json  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.evaluation import broadcasts, monitor_eval, protocol  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  from nafp_jax.monitoring import timeline  # pylint: disable=g-import-not-at-top
  from nafp_jax.monitoring.monitor import MonitorSettings, monitor_stream  # pylint: disable=g-import-not-at-top
  from nafp_jax.monitoring.tracker import Detection  # pylint: disable=g-import-not-at-top
  cat = catalogue_lib.Catalogue(args.db)
  fingerprinter = Fingerprinter(load_encoder(model_path(args.model)))
  cat.check_model(fingerprinter.bundle.identity)
  waves, _ = protocol.load_catalogue_tracks(cat)
  unknown = _folder_waves(args.unknown, args.files_per_folder, args.seed)
  speech = _folder_waves(args.speech, args.files_per_folder, args.seed + 1)
  noise = _folder_waves(args.noise, args.files_per_folder, args.seed + 2)
  settings = MonitorSettings(window_s=args.window_s, hop_s=args.hop_s,
                             frame_step=args.frame_step)
  block = max(1, int(round(args.block_s * broadcasts.SR)))
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  total = monitor_eval.MonitorScore()
  for k in range(args.programmes):
    spec = broadcasts.ProgrammeSpec(args.minutes, args.snr, args.t60, args.seed * 1000 + k)
    programme, truth = broadcasts.build_programme(waves, unknown, speech, noise, spec)
    read = 0  # samples handed to the monitor so far

    def blocks():
      nonlocal read
      for i in range(0, programme.shape[0], block):
        read = min(i + block, programme.shape[0])
        yield programme[i:read]

    start = time.perf_counter()
    events, started = [], []
    for event in monitor_stream(cat, fingerprinter, blocks(), settings, "auto"):
      events.append(event)
      if isinstance(event, Detection) and not event.final:
        started.append((event, read / broadcasts.SR))
    wall = time.perf_counter() - start
    final = [e for e in events if not isinstance(e, Detection) or e.final]
    result = monitor_eval.score([e for e in final if isinstance(e, Detection)], truth,
                                programme.shape[0] / broadcasts.SR, wall, started)
    total.add(result)
    records = [timeline.event_record(cat, f"programme-{k}", e) for e in final]
    timeline.write_csv(records, out / f"programme-{k}.csv")
    timeline.plot(records, out / f"programme-{k}.png")
    (out / f"programme-{k}-truth.json").write_text(json.dumps(
        [dataclasses.asdict(s) for s in truth], indent=1))
    print(f"programme {k}: " + _summary_line(result.summary()), flush=True)
  summary = total.summary()
  summary.update({"programmes": args.programmes, "minutes": args.minutes, "snr_db": args.snr,
                  "t60_s": args.t60, "seed": args.seed, "window_s": args.window_s,
                  "hop_s": args.hop_s, "frame_step": args.frame_step,
                  "block_s": args.block_s, "catalogue": str(cat.root),
                  "model_identity": fingerprinter.bundle.identity})
  (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
  print("all: " + _summary_line(summary))
  return 0


def _summary_line(s: dict) -> str:
  return (f"precision {s['precision']:.1%}, recall {s['recall']:.1%}, F1 {s['f1']:.1%} "
          f"({s['detections']} detections, {s['segments']} catalogue segments); boundaries "
          f"{s['start_error_median_s']:.1f} / {s['end_error_median_s']:.1f} s (median start / "
          f"end error); offset error median {1000 * s['offset_error_median_s']:.0f} ms, "
          f"{s['offset_within_50ms']:.0%} within 50 ms; reported {s['latency_median_s']:.1f} s "
          f"after a segment starts (median; 90th percentile {s['latency_p90_s']:.1f} s); "
          f"false alarms "
          f"{s['false_alarms_per_hour']:.1f} per hour of unknown audio "
          f"({s['unknown_hours']:.2f} h); {s['real_time_factor']:.1f}x real time")
