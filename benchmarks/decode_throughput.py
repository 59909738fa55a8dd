"""Where decoding an audio file to 16 kHz mono goes, and each step against its library default.

  python -m benchmarks.decode_throughput --inputs ~/.cache/nafp/open_corpus/dev --max_files 20

For each file (one core, in turn, as `audio_io.load_audio` runs them): libsndfile's
decode, the finiteness check, the mix to mono (`audio_io.mix_to_mono` vs numpy's
`mean(axis=1)`), the resampling to 16 kHz (`audio_io.resample` vs `librosa.resample`
with 'soxr_hq', checked equal bit for bit) and the silence check; then `load_audio`
whole.  Printed: ms per second of audio for each, summed over the files, and the
ratio of each pair.  Every step works on freshly decoded arrays, as indexing does
(timing a step over and over on one array would hide the cost of touching new memory).
"""

from __future__ import annotations

import collections
from pathlib import Path
import time

from absl import app, flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_list("inputs", None, "Audio files or folders.", required=True)
flags.DEFINE_integer("max_files", 20, "The first this many files (sorted); 0 = all.")


def main(_):
  import librosa  # pylint: disable=g-import-not-at-top
  from input_pipeline import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.identify import expand_inputs  # pylint: disable=g-import-not-at-top

  files = expand_inputs(FLAGS.inputs)
  files = files[:FLAGS.max_files] if FLAGS.max_files > 0 else files
  seconds = collections.Counter()
  audio_s, rates = 0.0, collections.Counter()

  def timed(step: str, fn):
    start = time.perf_counter()
    out = fn()
    seconds[step] += time.perf_counter() - start
    return out

  for path in files:
    try:
      data, sr = timed("decode (libsndfile)", lambda p=path: audio_io._decode(Path(p)))  # pylint: disable=protected-access
    except audio_io.AudioDecodeError as e:
      print(f"skipped {e}")
      continue
    rates[f"{sr} Hz, {data.shape[1]} ch"] += 1
    timed("finite check", lambda d=data: bool(np.all(np.isfinite(d))))
    mono_mean = timed("mono: numpy mean(axis=1)", lambda d=data: d.mean(axis=1))
    mono = timed("mono: mix_to_mono", lambda d=data: audio_io.mix_to_mono(d))
    if data.shape[1] < 8 and not np.array_equal(mono, mono_mean):
      raise AssertionError(f"{path}: mix_to_mono differs from the mean")
    if sr != audio_io.TARGET_SR:
      ours = timed("resample: audio_io.resample", lambda m=mono, r=sr: audio_io.resample(
          m, r, audio_io.TARGET_SR))
      theirs = timed("resample: librosa soxr_hq", lambda m=mono, r=sr: librosa.resample(
          m, orig_sr=r, target_sr=audio_io.TARGET_SR, res_type="soxr_hq"))
      if not np.array_equal(ours, theirs):
        raise AssertionError(f"{path}: audio_io.resample differs from librosa.resample")
      mono = ours
    timed("silence check", lambda m=mono: float(np.max(np.abs(m))))
    audio_s += mono.shape[0] / audio_io.TARGET_SR
    timed("load_audio, whole", lambda p=path: audio_io.load_audio(p, allow_silent=True))
  print(f"{len(files)} files ({dict(rates)}), {audio_s / 3600:.3f} h of audio; "
        "ms per second of audio:")
  for step, s in seconds.items():
    print(f"  {step:32s} {s / audio_s * 1000:7.3f}")
  common = sum(seconds[k] for k in ("decode (libsndfile)", "finite check", "silence check"))
  mine = common + seconds["mono: mix_to_mono"] + seconds["resample: audio_io.resample"]
  library = common + seconds["mono: numpy mean(axis=1)"] + seconds["resample: librosa soxr_hq"]
  print(f"  {'steps, as audio_io runs them':32s} {mine / audio_s * 1000:7.3f}\n"
        f"  {'steps, with the library defaults':32s} {library / audio_s * 1000:7.3f}"
        f"  ({library / mine:.2f}x)")
  for ours, theirs in (("mono: mix_to_mono", "mono: numpy mean(axis=1)"),
                       ("resample: audio_io.resample", "resample: librosa soxr_hq")):
    if seconds[ours]:
      print(f"  {ours} is {seconds[theirs] / seconds[ours]:.2f}x faster than {theirs}")


if __name__ == "__main__":
  app.run(main)
