"""Does a no-match threshold hold when the catalogue grows ten-fold?

  python -m benchmarks.no_match_scale --audio=~/.cache/nafp/open_corpus/train \
      --noise=~/.cache/nafp/open_corpus/noise --work=~/.cache/nafp/no_match_scale

The music is split by source folder into a reference half and a held-out half
(calibration.split_by_source, as `nafp calibrate-model` splits it).  Two catalogues are
built from the reference half: SMALL, every tenth track, and LARGE, all of them (about
ten times the audio).  The same clips of held-out music (never in either catalogue) are
searched in both, and positives (clips of LARGE's tracks, clean and with noise at 5 dB
SNR) in LARGE.  Printed per query duration: the threshold measured on each catalogue,
the false-positive rate on LARGE of the threshold measured on SMALL (what a user whose
catalogue grows ten-fold gets), and the share of positives each threshold accepts.

With --unseen=FOLDER (music the model never saw, e.g. the DEV split: it is only
measured here, never calibrated on), the false-positive rate of its clips against both
catalogues at the model's shipped default threshold (no_match.json, scaled to each
catalogue's size) is printed too; --unseen_only prints only that.

Catalogues and scores are kept under --work, so a rerun only computes what is new.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string("audio", None, "Music folder(s), one sub-folder per source; not DEV.")
flags.DEFINE_string("noise", None, "Noise folder for the noisy positives.")
flags.DEFINE_string("model", "nafp_jax/assets/model", "Exported model folder.")
flags.DEFINE_string("work", None, "Folder for the two catalogues (reused when present).")
flags.DEFINE_integer("clips", 300, "Held-out clips per duration.")
flags.DEFINE_integer("positives", 100, "Positive clips per duration and kind.")
flags.DEFINE_float("fpr", 0.01, "False-positive rate the thresholds are set at.")
flags.DEFINE_integer("small_every", 10, "SMALL holds every n-th reference track (as "
                     "calibration.SMALL_REFERENCE_EVERY).")
flags.DEFINE_string("unseen", None, "Music the model never saw, for its false-positive rate "
                    "against LARGE (evaluation audio may serve: it only measures).")
flags.DEFINE_bool("unseen_only", False, "Only the --unseen report (the catalogues are reused).")
flags.mark_flags_as_required(["audio", "noise", "work"])


def _catalogue(path: Path, files, fingerprinter):
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.identify import index_files  # pylint: disable=g-import-not-at-top
  if (path / "CURRENT").exists():
    cat = catalogue_lib.Catalogue(path)
    cat.check_model(fingerprinter.bundle.identity)
    if len(cat.tracks) == len(files):
      return cat
  else:
    cat = catalogue_lib.create(path, fingerprinter.bundle.identity, fingerprinter.bundle.source,
                               fingerprinter.dim)
  cat, report = index_files(cat, fingerprinter, files)
  print(f"{path.name}: {len(cat.tracks)} tracks, {report.audio_seconds / 3600:.2f} h indexed in "
        f"{report.wall_seconds:.0f} s")
  return cat


def _positive_scores(cat, fingerprinter, durations, per_duration: int, noise_files,
                     snr_db: float | None, seed: int) -> dict[float, list[float]]:
  """Best scores of clips cut from the catalogue's own tracks, when the right track wins."""
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from input_pipeline import distortions  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.identify import identify  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  noise = [audio_io.load_audio(p) for p in noise_files]
  scores: dict[float, list[float]] = {d: [] for d in durations}
  tracks = rng.choice(len(cat.tracks), per_duration, replace=len(cat.tracks) < per_duration)
  for t in tracks:
    wave = audio_io.load_audio(cat.tracks[t].path)
    for d in durations:
      n = int(d * audio_io.SAMPLE_RATE)
      if wave.shape[0] < n:
        continue
      start = int(rng.integers(0, wave.shape[0] - n + 1))
      clip = wave[start:start + n]
      if snr_db is not None:
        bed = noise[int(rng.integers(len(noise)))]
        bed = np.resize(bed, n)  # loops a short noise file
        clip = distortions.mix_at_snr(clip, bed, snr_db)
      r = identify(cat, fingerprinter, clip, threshold=-np.inf)
      if r.matches and r.matches[0].track == t:
        scores[d].append(r.matches[0].score)
      elif r.matches:
        scores[d].append(-np.inf)  # wrong track: never a correct acceptance
  return scores


def _cached(path: Path, compute) -> dict[float, list[float]]:
  """Scores per duration, computed once per --work folder (a rerun reads them)."""
  if path.exists():
    return {float(d): v for d, v in json.loads(path.read_text()).items()}
  scores = compute()
  path.write_text(json.dumps({str(d): [float(x) for x in v] for d, v in scores.items()}))
  return scores


def main(_):
  from nafp_jax.inference import cpu_devices  # pylint: disable=g-import-not-at-top
  cpu_devices.split_cpu_into_devices()
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import calibration, no_match  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top

  fingerprinter = Fingerprinter(load_encoder(Path(FLAGS.model).expanduser()))
  work = Path(FLAGS.work).expanduser()
  if FLAGS.unseen_only:
    reference, _ = calibration.split_by_source([Path(a).expanduser() for a in FLAGS.audio.split(",")])
    cats = {"small": _catalogue(work / f"small-{fingerprinter.bundle.identity[:12]}",
                                calibration.small_reference(reference, FLAGS.small_every),
                                fingerprinter),
            "large": _catalogue(work / f"large-{fingerprinter.bundle.identity[:12]}", reference,
                                fingerprinter)}
    _unseen_report(cats, fingerprinter, no_match.DEFAULT_DURATIONS_S, work)
    return
  reference, negatives = calibration.split_by_source(
      [Path(a).expanduser() for a in FLAGS.audio.split(",")])
  small = calibration.small_reference(reference, FLAGS.small_every)
  cats = {"small": _catalogue(work / f"small-{fingerprinter.bundle.identity[:12]}", small,
                              fingerprinter),
          "large": _catalogue(work / f"large-{fingerprinter.bundle.identity[:12]}", reference,
                              fingerprinter)}
  durations = no_match.DEFAULT_DURATIONS_S
  hours = {k: c.hours for k, c in cats.items()}
  neg = {k: _cached(work / f"negatives-{k}-{FLAGS.clips}.json",
                    lambda c=c: calibration.negative_best_scores(c, fingerprinter, negatives,
                                                                 durations, FLAGS.clips, seed=0))
         for k, c in cats.items()}
  thresholds = {k: no_match.from_negative_scores(s, FLAGS.fpr, "calibrated", hours[k])
                for k, s in neg.items()}
  noise_files = audio_io.find_audio_files(Path(FLAGS.noise).expanduser())[:40]
  pos = {kind: _cached(work / f"positives-{kind.replace(' ', '')}-{FLAGS.positives}.json",
                       lambda snr=snr, seed=seed: _positive_scores(
                           cats["large"], fingerprinter, durations, FLAGS.positives,
                           noise_files, snr, seed))
         for kind, snr, seed in (("clean", None, 1), ("noise 5 dB", 5.0, 2))}

  print(f"\nSMALL {hours['small']:.2f} h ({len(cats['small'].tracks)} tracks), LARGE "
        f"{hours['large']:.2f} h ({len(cats['large'].tracks)} tracks); thresholds at "
        f"{FLAGS.fpr:.1%} FPR; {len(negatives)} held-out files")
  print("| clip | threshold SMALL | threshold LARGE | FPR on LARGE with SMALL's | FPR on SMALL "
        "with LARGE's | clean accepted (SMALL's / LARGE's) | noise 5 dB accepted |")
  print("|---|---|---|---|---|---|---|")
  for d in durations:
    ts, tl = thresholds["small"].at(d), thresholds["large"].at(d)
    fpr_up = np.mean(np.asarray(neg["large"][d]) >= ts)
    fpr_down = np.mean(np.asarray(neg["small"][d]) >= tl)
    acc = {k: (np.mean(np.asarray(v[d]) >= ts), np.mean(np.asarray(v[d]) >= tl))
           for k, v in pos.items()}
    print(f"| {d:g} s | {ts:.3f} | {tl:.3f} | {fpr_up:.1%} (n={len(neg['large'][d])}) | "
          f"{fpr_down:.1%} | {acc['clean'][0]:.0%} / {acc['clean'][1]:.0%} | "
          f"{acc['noise 5 dB'][0]:.0%} / {acc['noise 5 dB'][1]:.0%} |")


  if FLAGS.unseen:
    _unseen_report(cats, fingerprinter, durations, work)


def _unseen_report(cats, fingerprinter, durations, work: Path) -> None:
  """False positives of music the model never saw, against both catalogues, at the model's
  default threshold scaled to each catalogue's size."""
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import calibration, no_match  # pylint: disable=g-import-not-at-top
  default = no_match.read_model_default(Path(FLAGS.model).expanduser())
  if default is None:
    raise SystemExit(f"{FLAGS.model}: no default threshold to check (run calibrate-model)")
  files = audio_io.find_audio_files(Path(FLAGS.unseen).expanduser())
  print(f"\nMusic the model never saw ({len(files)} files of --unseen) at the model's default "
        f"threshold ({default.describe()})")
  print("| clip | " + " | ".join(f"{k.upper()} {c.hours:.2f} h: threshold, false positives"
                                 for k, c in cats.items()) + " |")
  print("|---|" + "---|" * len(cats))
  scores = {k: _cached(work / f"unseen-{k}-{FLAGS.clips}.json",
                       lambda c=c: calibration.negative_best_scores(
                           c, fingerprinter, files, durations, FLAGS.clips, seed=0))
            for k, c in cats.items()}
  for d in durations:
    cells = []
    for k, c in cats.items():
      t = default.at(d, c.hours)
      v = np.asarray(scores[k][d])
      cells.append(f"{t:.3f}, {np.mean(v >= t):.1%} (n={v.size})")
    print(f"| {d:g} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
  app.run(main)
