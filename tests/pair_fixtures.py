"""Tiny banks of tracks, noise and one RIR for the pair pipeline's tests (16 kHz PCM)."""

import numpy as np

from input_pipeline import pairs
from input_pipeline.pcm_bank import PcmBank


def pair_banks(tmp_path, silent_track=False):
  """(tracks, noise, RIRs) banks in tmp_path: two noise tracks (and a silent one), one noise file, one two-tap RIR."""
  rng = np.random.default_rng(2)
  tracks = [("t0", (rng.standard_normal(16000 * 6) * 3000).astype(np.int16)),
            ("t1", (rng.standard_normal(16000 * 4) * 3000).astype(np.int16))]
  if silent_track:
    tracks.append(("silence", np.zeros(16000 * 10, np.int16)))
  track_bank = PcmBank.write(tmp_path / "tracks", tracks, np.int16, 16000)
  noise_bank = PcmBank.write(tmp_path / "noise", [("n0", (rng.standard_normal(5000) * 3000)
                                                   .astype(np.int16))], np.int16, 16000)
  rir = np.zeros(800, np.float32)
  rir[0], rir[400] = 1.0, 0.5
  rir_bank = PcmBank.write(tmp_path / "rirs", [("r0", rir)], np.float32, 16000)
  return track_bank, noise_bank, rir_bank


def pair_source(tmp_path, **overrides):
  """A PairSource over pair_banks with short reverb context and RIRs; `overrides` go to PairConfig."""
  cfg = pairs.PairConfig(reverb_context_samples=1600, rir_samples=800, **overrides)
  return pairs.PairSource(*pair_banks(tmp_path), cfg)
