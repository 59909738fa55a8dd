"""Indexing throughput: `nafp index` on real files with and without decoding ahead, side by side.

  python -m benchmarks.index_throughput --inputs ~/.cache/nafp/open_corpus/dev --max_files 20

Indexes the same files into a fresh catalogue once per read-ahead depth (`--depths`,
the first is the baseline; 0 = decode each file, then fingerprint it), in turn, for
`--rounds` rounds, through `identify.index_files` as the CLI calls it (hashing,
decoding + resampling, fingerprinting, the catalogue write), with the model `nafp`
uses by default (the shipped one, or `--model`) on one XLA device per core.  Printed:
per depth the median hours of audio indexed per wall-clock second ("x real time")
and the median, min and max per-round ratio to the baseline; and, measured once, the
two parts alone — decoding every file, fingerprinting every decoded waveform — whose
sum is what indexing in turn costs, and whose larger is the least overlap could reach.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("inputs", None, "Audio files or folders to index.", required=True)
flags.DEFINE_integer("max_files", 20, "Index the first this many files (sorted); 0 = all.")
flags.DEFINE_list("depths", ["0", "2"], "Read-ahead depths to compare; the first is the baseline.")
flags.DEFINE_integer("rounds", 3, "Rounds of one indexing run per depth.")
flags.DEFINE_string("model", None, "Model folder; default: the shipped model, as `nafp index`.")


def main(_):
  from nafp_jax.inference import cpu_devices  # pylint: disable=g-import-not-at-top
  cpu_devices.split_cpu_into_devices()  # as the `nafp` CLI runs
  from nafp_jax.audio import read_ahead  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue import store as catalogue_lib  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.encoder_bundle import load_encoder  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.fingerprinter import Fingerprinter  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.identify import expand_inputs, index_files  # pylint: disable=g-import-not-at-top
  from nafp_jax.inference.shipped_model import model_path  # pylint: disable=g-import-not-at-top

  depths = [int(d) for d in FLAGS.depths]
  if len(depths) < 2 or min(depths) < 0:
    raise ValueError(f"--depths {FLAGS.depths}: give at least two depths >= 0")
  files = expand_inputs(FLAGS.inputs)
  files = files[:FLAGS.max_files] if FLAGS.max_files > 0 else files
  if not files:
    raise ValueError(f"--inputs {FLAGS.inputs}: no audio files found")
  bundle = load_encoder(model_path(FLAGS.model))
  fingerprinter = Fingerprinter(bundle)
  print(f"model {bundle.source} ({bundle.config.model.name}); {len(files)} files; "
        f"batch {fingerprinter.batch_size}", flush=True)

  t0 = time.perf_counter()
  waves = [r.wave for r in read_ahead.read_ahead(files, depth=0) if r.wave is not None]
  decode_s = time.perf_counter() - t0
  audio_s = sum(w.shape[0] for w in waves) / 16000
  fingerprinter.track_fingerprints(waves[0])  # compile
  t0 = time.perf_counter()
  for wave in waves:
    fingerprinter.track_fingerprints(wave)
  fingerprint_s = time.perf_counter() - t0
  del waves
  print(f"{audio_s / 3600:.3f} h of audio in {len(files)} files: hashing + decoding + resampling "
        f"{decode_s:.1f} s ({decode_s / audio_s * 1000:.2f} ms per audio second), fingerprinting "
        f"{fingerprint_s:.1f} s ({fingerprint_s / audio_s * 1000:.2f} ms); the two in turn "
        f"{decode_s + fingerprint_s:.1f} s", flush=True)

  def index_once(depth: int) -> float:
    """Wall seconds of indexing every file into a new catalogue."""
    with tempfile.TemporaryDirectory() as folder:
      cat = catalogue_lib.create(f"{folder}/cat", bundle.identity, bundle.source,
                                 fingerprinter.dim, "float32")
      start = time.perf_counter()
      _, report = index_files(cat, fingerprinter, files, progress=False, read_ahead_files=depth)
      seconds = time.perf_counter() - start
    if abs(report.audio_seconds - audio_s) > 1e-3:
      raise AssertionError(f"depth {depth} indexed {report.audio_seconds:.1f} s of audio, "
                           f"not {audio_s:.1f}")
    return seconds

  seconds = {d: [] for d in depths}
  for r in range(FLAGS.rounds):
    for d in depths:
      seconds[d].append(index_once(d))
    print(f"round {r + 1}: " + ", ".join(f"depth {d} {seconds[d][-1]:.1f} s" for d in depths),
          flush=True)
  base = depths[0]
  print(f"\nindexing {audio_s / 3600:.3f} h of audio, {FLAGS.rounds} rounds (median):")
  for d in depths:
    ratios = [b / s for b, s in zip(seconds[base], seconds[d])]
    wall = statistics.median(seconds[d])
    print(f"  read-ahead {d}: {wall:6.1f} s, {audio_s / wall:6.1f}x real time; "
          f"speed vs depth {base}: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
  app.run(main)
