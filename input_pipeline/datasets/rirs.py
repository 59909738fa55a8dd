"""TFDS builder for room impulse responses: measured (a folder) or simulated.

* `measured`-style configs read every WAV/FLAC/... in the manual directory
  (AIR, MIT, OpenSLR RIR collections and the like).
* `simulated`-style configs run pyroomacoustics' hybrid image-source + ray
  tracing simulation of random shoebox rooms whose Sabine T60 is drawn
  log-uniformly from a range, with a fixed seed (built once, then cached by TFDS).
  Training uses these.
* `family="held_out"` simulates another family of rooms, for evaluation only:
  L-shaped floor plans extruded to a height, a hard floor and ceiling (strong early
  reflections) with absorbing walls, larger volumes for a T60, and the source
  often far from the microphone.  No training config draws from it.

Every RIR is aligned to its direct path (samples before the strongest peak are
dropped), scaled to peak 1, cut at `max_length_s`, and stored with its T60
(the Sabine target for simulated rooms; for measured ones the Schroeder
backward-integral estimate, NaN when the response is too short to tell).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from nafp_jax.audio import audio_io
from nafp_jax.audio.constants import SAMPLE_RATE


@dataclasses.dataclass
class RirConfig(tfds.core.BuilderConfig):
  """`simulated=False` reads a folder; otherwise `num_rirs` rooms with T60 in `t60_range`."""
  simulated: bool = True
  num_rirs: int = 400
  t60_range: tuple[float, float] = (0.15, 3.0)
  seed: int = 0
  max_length_s: float = 3.0
  family: str = "shoebox"  # or "held_out" (evaluation rooms; simulate_held_out_rir)


def align_and_normalize(rir: np.ndarray, max_length: int) -> np.ndarray:
  """Start at the direct path (strongest peak), peak 1, at most `max_length` samples."""
  rir = np.asarray(rir, np.float64)
  start = int(np.argmax(np.abs(rir)))
  rir = rir[start:start + max_length]
  peak = float(np.max(np.abs(rir)))
  if peak <= 0:
    raise ValueError("impulse response is all zeros")
  return (rir / peak).astype(np.float32)


def measure_t60(rir: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
  """T60 from the Schroeder decay curve (T20 fit extrapolated), NaN when too short."""
  energy = np.cumsum((rir.astype(np.float64) ** 2)[::-1])[::-1]
  if energy[0] <= 0:
    return float("nan")
  edc = 10 * np.log10(np.maximum(energy / energy[0], 1e-30))
  i5 = np.argmax(edc <= -5)
  i25 = np.argmax(edc <= -25)
  if edc[-1] > -25 or i25 <= i5:
    return float("nan")
  slope = (edc[i25] - edc[i5]) / ((i25 - i5) / sample_rate)  # dB per second
  return float(-60.0 / slope)


def simulate_rir(rng: np.random.Generator, t60: float) -> np.ndarray:
  """One RIR of a random shoebox room with Sabine T60 `t60` (pyroomacoustics, hybrid ISM/RT)."""
  import pyroomacoustics as pra  # pylint: disable=g-import-not-at-top
  # The ray tracer has its own RNG in C++: seed it from ours so a set is reproducible.
  pra.random.seed(numpy=int(rng.integers(2**31)), libroom=int(rng.integers(2**31)))
  # Larger rooms for longer reverberation, as in real spaces (cars to halls).
  scale = np.interp(t60, [0.1, 0.5, 1.0, 3.0], [3.0, 6.0, 12.0, 30.0])
  dims = np.array([rng.uniform(0.8, 1.4) * scale, rng.uniform(0.6, 1.0) * scale,
                   rng.uniform(2.4, 3.0) + rng.uniform(0.0, 0.3) * scale])
  absorption, max_order = pra.inverse_sabine(t60, dims)
  if absorption >= 1.0:
    absorption = 0.99
  room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(float(absorption)),
                     max_order=min(int(max_order), 3), ray_tracing=True, air_absorption=True,
                     use_rand_ism=False)
  room.set_ray_tracing(n_rays=2000, receiver_radius=0.5, energy_thres=1e-7)
  margin = 0.5
  src = rng.uniform(margin, dims - margin)
  mic = rng.uniform(margin, dims - margin)
  room.add_source(src)
  room.add_microphone(mic)
  room.compute_rir()
  return np.asarray(room.rir[0][0], np.float64)


def _polygon_area_perimeter(corners: np.ndarray) -> tuple[float, float]:
  x, y = corners
  area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
  perimeter = float(np.sum(np.hypot(np.diff(x, append=x[0]), np.diff(y, append=y[0]))))
  return area, perimeter


def simulate_held_out_rir(rng: np.random.Generator, t60: float) -> np.ndarray:
  """One RIR of the held-out family (module docstring) with Sabine T60 `t60`.

  An L-shaped floor (a rectangle less one corner), extruded; floor and ceiling absorb
  a third of what the walls do, the walls take the rest of the Sabine absorption; the
  source and the microphone are drawn inside, at least 1 m and up to a third of the
  room's size apart.
  """
  import pyroomacoustics as pra  # pylint: disable=g-import-not-at-top
  pra.random.seed(numpy=int(rng.integers(2**31)), libroom=int(rng.integers(2**31)))
  scale = np.interp(t60, [0.2, 0.5, 1.0, 3.0], [4.0, 7.0, 14.0, 36.0])
  w, d = rng.uniform(0.9, 1.5) * scale, rng.uniform(0.6, 1.0) * scale
  cw, cd = rng.uniform(0.25, 0.5) * w, rng.uniform(0.25, 0.5) * d
  corners = np.array([[0, 0], [w, 0], [w, d - cd], [w - cw, d - cd], [w - cw, d], [0, d]],
                     np.float64).T
  height = rng.uniform(2.5, 3.5) + rng.uniform(0.0, 0.4) * scale
  area, perimeter = _polygon_area_perimeter(corners)
  surface = 2 * area + perimeter * height
  mean_absorption = 0.161 * area * height / (surface * t60)  # Sabine
  # Hard floor and ceiling at a third of the walls' absorption, same total.
  walls = mean_absorption * surface / (perimeter * height + 2 * area / 3)
  walls = float(np.clip(walls, 0.01, 0.99))
  hard = float(np.clip(walls / 3, 0.005, 0.99))
  room = pra.Room.from_corners(corners, fs=SAMPLE_RATE, max_order=3,
                               materials=pra.Material(walls), ray_tracing=True,
                               air_absorption=True)
  room.extrude(height, materials=pra.Material(hard))
  room.set_ray_tracing(n_rays=2000, receiver_radius=0.5, energy_thres=1e-7)

  def inside_point() -> np.ndarray:
    while True:
      p = np.array([rng.uniform(0.5, w - 0.5), rng.uniform(0.5, d - 0.5),
                    rng.uniform(1.0, min(2.0, height - 0.5))])
      if room.is_inside(p, include_borders=False):
        return p

  mic = inside_point()
  far = max(1.5, scale / 3)
  for _ in range(1000):
    src = inside_point()
    if 1.0 <= np.linalg.norm(src - mic) <= far:
      break
  room.add_source(src)
  room.add_microphone(mic)
  room.compute_rir()
  return np.asarray(room.rir[0][0], np.float64)


class RoomImpulseResponses(tfds.core.GeneratorBasedBuilder):
  """Room impulse responses, aligned to the direct path, 16 kHz float32."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = "For measured RIRs pass the folder of RIR audio files as manual_dir."
  BUILDER_CONFIGS = [RirConfig(name="simulated"), RirConfig(name="measured", simulated=False)]

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Room impulse responses aligned to the direct path.",
        features=tfds.features.FeaturesDict({
            "rir": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "t60": np.float32,
            "source": tfds.features.Text(),
        }), supervised_keys=None)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    if self.builder_config.simulated:
      return {"train": self._generate_examples(None)}
    root = Path(dl_manager.manual_dir)
    paths = audio_io.find_audio_files(root)
    if not paths:
      raise FileNotFoundError(f"{root}: no impulse response audio files")
    return {"train": self._generate_examples(paths)}

  def _generate_examples(self, paths: list[Path] | None):
    cfg = self.builder_config
    max_len = int(cfg.max_length_s * SAMPLE_RATE)
    if paths is None:
      simulators = {"shoebox": simulate_rir, "held_out": simulate_held_out_rir}
      if cfg.family not in simulators:
        raise ValueError(f"unknown room family {cfg.family!r} (expected {sorted(simulators)})")
      rng = np.random.default_rng(cfg.seed)
      lo, hi = np.log(cfg.t60_range[0]), np.log(cfg.t60_range[1])
      for i in range(cfg.num_rirs):
        target = float(np.exp(rng.uniform(lo, hi)))
        rir = align_and_normalize(simulators[cfg.family](rng, target), max_len)
        # The Sabine target is stored: a decay fit on a truncated long RIR is biased.
        yield f"sim{i:05d}", {"rir": rir, "t60": np.float32(target),
                              "source": f"simulated {cfg.family}, target T60 {target:.2f} s"}
      return
    skipped = 0
    for path in paths:
      try:
        rir = align_and_normalize(audio_io.load_audio(path, SAMPLE_RATE), max_len)
      except (audio_io.AudioDecodeError, ValueError) as e:
        logging.warning("Skipping impulse response %s: %s", path, e)
        skipped += 1
        continue
      yield str(path), {"rir": rir, "t60": np.float32(measure_t60(rir)), "source": str(path)}
    if skipped:
      logging.warning("Skipped %d unusable impulse response file(s).", skipped)
