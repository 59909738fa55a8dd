"""Where decoding an audio file to 16 kHz mono goes, and the mix to mono against numpy's mean.

  python -m benchmarks.decode_throughput --inputs ~/.cache/nafp/open_corpus/dev --max_files 20

For each file (one core, in turn, as `audio_io.load_audio` runs them): libsndfile's
decode, the finiteness check, the mix to mono (`audio_io.mix_to_mono` and numpy's
`mean(axis=1)`, checked equal), the resampling to 16 kHz (librosa's 'soxr_hq') and the
silence check; then `load_audio` whole.  Printed: ms per second of audio for each step,
summed over the files, and the ratio of the two mixes.  Every step works on freshly
decoded arrays, as indexing does; the two mixes take turns going first (the first to
allocate its output pays for new memory), and the resampler is called once before the
timings (its first call sets librosa up).
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

_MEAN, _MIX = "mono: numpy mean(axis=1)", "mono: audio_io.mix_to_mono"


def main(_):
  import librosa  # pylint: disable=g-import-not-at-top
  from nafp_jax.audio import audio_io  # pylint: disable=g-import-not-at-top
  from nafp_jax.catalogue.identify import expand_inputs  # pylint: disable=g-import-not-at-top

  files = expand_inputs(FLAGS.inputs)
  files = files[:FLAGS.max_files] if FLAGS.max_files > 0 else files
  seconds = collections.Counter()
  audio_s, formats = 0.0, collections.Counter()

  def timed(step: str, fn):
    start = time.perf_counter()
    out = fn()
    seconds[step] += time.perf_counter() - start
    return out

  def resample(wave: np.ndarray, sr: int) -> np.ndarray:
    return librosa.resample(wave, orig_sr=sr, target_sr=audio_io.SAMPLE_RATE, res_type="soxr_hq")

  resample(np.zeros(4410, np.float32), 44100)
  for n, path in enumerate(files):
    try:
      data, sr = timed("decode (libsndfile)", lambda p=path: audio_io.decode_file(Path(p)))
    except audio_io.AudioDecodeError as e:
      print(f"skipped {e}")
      continue
    formats[f"{sr} Hz, {data.shape[1]} ch"] += 1
    timed("finite check", lambda d=data: bool(np.all(np.isfinite(d))))
    mixes = {_MEAN: lambda d=data: d.mean(axis=1), _MIX: lambda d=data: audio_io.mix_to_mono(d)}
    order = [_MEAN, _MIX] if n % 2 == 0 else [_MIX, _MEAN]
    mono = {step: timed(step, mixes[step]) for step in order}
    if data.shape[1] < 8 and not np.array_equal(mono[_MEAN], mono[_MIX]):
      raise AssertionError(f"{path}: mix_to_mono differs from the mean")
    wave = mono[_MIX]
    if sr != audio_io.SAMPLE_RATE:
      wave = timed("resample (librosa soxr_hq)", lambda w=wave, r=sr: resample(w, r))
    timed("silence check", lambda w=wave: float(np.max(np.abs(w))))
    audio_s += wave.shape[0] / audio_io.SAMPLE_RATE
    timed("load_audio, whole", lambda p=path: audio_io.load_audio(p, allow_silent=True))
  if not audio_s:
    raise ValueError(f"--inputs {FLAGS.inputs}: no decodable audio files")
  print(f"{len(files)} files ({dict(formats)}), {audio_s / 3600:.3f} h of audio; "
        "ms per second of audio:")
  for step, s in seconds.items():
    print(f"  {step:32s} {s / audio_s * 1000:7.3f}")
  print(f"  {_MIX} is {seconds[_MEAN] / seconds[_MIX]:.2f}x faster than {_MEAN}")


if __name__ == "__main__":
  app.run(main)
