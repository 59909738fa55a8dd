"""Log-mel front end in JAX (docs/design.md §1), meant to run inside the jitted step.

16 kHz mono waveform -> centred STFT (n_fft 512, periodic Hann 512, hop 160,
reflect padding) -> power spectrogram -> 64 HTK mel bands 0-8 kHz (no filter
normalisation) -> 10*log10(max(x, 1e-10)).  A fingerprint is a window of 96
frames x 64 mels taken every 10 frames (100 ms); window i has timestamp 0.1*i s.

Training embeds 0.96 s crops that are each peak-normalised (input_pipeline.pairs),
so the encoder only ever saw windows whose loudest sample is at full scale.  At
inference a window cut from a whole track or query is brought to that same level
(`window_peak_db`, `normalise_window_levels`): in dB that is one subtraction per
window, exact wherever a mel bin is above the 1e-10 floor.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nafp_jax.audio.constants import PEAK_FLOOR, SAMPLE_RATE

N_FFT = 512
HOP = 160
N_MELS = 64
WINDOW_FRAMES = 96
WINDOW_HOP_FRAMES = 10
# Samples in one 0.96 s fingerprint window (96 hops).
SEGMENT_SAMPLES = WINDOW_FRAMES * HOP
# Seconds between consecutive fingerprints of a track.
FINGERPRINT_HOP_S = WINDOW_HOP_FRAMES * HOP / SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class FrontEndConfig:
  """Numbers of the log-mel front end; the defaults are docs/design.md §1."""
  sample_rate: int = SAMPLE_RATE
  n_fft: int = N_FFT
  hop: int = HOP
  n_mels: int = N_MELS
  fmin: float = 0.0
  fmax: float = 8000.0
  amin: float = 1e-10


@functools.lru_cache(maxsize=8)
def mel_matrix(cfg: FrontEndConfig = FrontEndConfig()) -> np.ndarray:
  """HTK mel filterbank [n_fft//2+1, n_mels] from librosa (no Slaney norm)."""
  import librosa  # pylint: disable=g-import-not-at-top  (slow import, only needed once)
  fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                           fmin=cfg.fmin, fmax=cfg.fmax, htk=True, norm=None)
  return np.ascontiguousarray(fb.T.astype(np.float32))


def _hann(n: int) -> np.ndarray:
  """Periodic Hann window (as scipy.signal.get_window('hann', n, fftbins=True))."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def num_frames(num_samples: int, hop: int = HOP) -> int:
  """Frames of a centred STFT of `num_samples` samples."""
  return 1 + num_samples // hop


def num_fingerprints(num_samples: int) -> int:
  """Fingerprints (96-frame windows every 10 frames) of a waveform; 0 if too short."""
  frames = num_frames(num_samples)
  if frames < WINDOW_FRAMES:
    return 0
  return 1 + (frames - WINDOW_FRAMES) // WINDOW_HOP_FRAMES


def log_mel(wave: jax.Array, cfg: FrontEndConfig = FrontEndConfig()) -> jax.Array:
  """Log-mel spectrogram in dB of [..., samples] -> [..., frames, n_mels] (centred STFT)."""
  pad = cfg.n_fft // 2
  lead = wave.shape[:-1]
  x = wave.astype(jnp.float32).reshape((-1, wave.shape[-1]))
  x = jnp.pad(x, ((0, 0), (pad, pad)), mode="reflect")
  mel = log_mel_frames(x, num_frames(wave.shape[-1], cfg.hop), cfg)
  return mel.reshape(lead + mel.shape[1:])


def segment_features(wave: jax.Array, cfg: FrontEndConfig = FrontEndConfig()) -> jax.Array:
  """Model input for a batch of 0.96 s crops: [B, samples] -> [B, 64, 96, 1] (F, T, C).

  The crop gives 1 + samples//hop frames; the first 96 are the fingerprint window.
  """
  if num_frames(wave.shape[-1], cfg.hop) < WINDOW_FRAMES:
    raise ValueError(f"crop of {wave.shape[-1]} samples is shorter than one fingerprint "
                     f"({SEGMENT_SAMPLES} samples)")
  mel = log_mel(wave, cfg)[..., :WINDOW_FRAMES, :]
  return jnp.swapaxes(mel, -1, -2)[..., None]


def frame_windows(mel: jax.Array) -> jax.Array:
  """Cut a track's log-mel [frames, n_mels] into fingerprint windows [N, 64, 96, 1].

  Window i covers frames [10 i, 10 i + 96) and has timestamp 0.1 i s.
  """
  if mel.shape[0] < WINDOW_FRAMES:
    raise ValueError(f"{mel.shape[0]} frames is shorter than one fingerprint ({WINDOW_FRAMES})")
  n = 1 + (mel.shape[0] - WINDOW_FRAMES) // WINDOW_HOP_FRAMES
  idx = np.arange(n)[:, None] * WINDOW_HOP_FRAMES + np.arange(WINDOW_FRAMES)[None, :]
  return jnp.swapaxes(mel[idx], -1, -2)[..., None]


def pad_for_windows(wave: np.ndarray, cfg: FrontEndConfig = FrontEndConfig()) -> np.ndarray:
  """Reflect-pad a waveform as the centred STFT does (for chunked `log_mel_frames` calls)."""
  pad = cfg.n_fft // 2
  if wave.shape[-1] <= pad:
    raise ValueError(f"waveform of {wave.shape[-1]} samples is shorter than one fingerprint")
  return np.pad(np.asarray(wave, np.float32), (pad, pad), mode="reflect")


def log_mel_frames(slices: jax.Array, n_frames: int,
                   cfg: FrontEndConfig = FrontEndConfig()) -> jax.Array:
  """Log-mel [B, n_frames, n_mels] of slices [B, >= (n_frames - 1) * hop + n_fft] of a padded signal.

  Frame k reads samples [hop k, hop k + n_fft) of the slice, so a slice starting at
  sample hop * k0 of `pad_for_windows(track)` gives frames k0, k0 + 1, ... of `log_mel`.
  """
  idx = np.arange(n_frames)[:, None] * cfg.hop + np.arange(cfg.n_fft)[None, :]
  framed = slices[:, idx] * jnp.asarray(_hann(cfg.n_fft))
  spec = jnp.fft.rfft(framed, n=cfg.n_fft, axis=-1)
  power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  mel = jnp.einsum("btf,fm->btm", power, jnp.asarray(mel_matrix(cfg)),
                   precision=jax.lax.Precision.HIGHEST)
  return 10.0 * jnp.log10(jnp.maximum(mel, cfg.amin))


def windows_from_mel(mel: np.ndarray, start_frames: np.ndarray) -> np.ndarray:
  """Host-side `frame_windows` for chosen starts: mel [frames, 64] -> [N, 64, 96, 1]."""
  idx = np.asarray(start_frames)[:, None] + np.arange(WINDOW_FRAMES)[None, :]
  return np.ascontiguousarray(np.swapaxes(mel[idx], -1, -2)[..., None])


# Mel floor for log-mels that are level-normalised afterwards: a bin at this floor
# (-379 dB) stays below the standard -100 dB floor even when lifted by the largest
# shift (-20 log10 PEAK_FLOOR = 240 dB), so clamping after the shift is exact.
UNCLAMPED_AMIN = float(np.finfo(np.float32).tiny)


def window_peak_db(wave: np.ndarray, start_frames: np.ndarray) -> np.ndarray:
  """20 log10 of the peak |sample| of each window's 0.96 s crop [N].

  Window s covers samples [HOP s, HOP s + SEGMENT_SAMPLES): the crop a training
  example of that window would be cut as.  Samples past the end count as 0.
  """
  wave = np.abs(np.asarray(wave, np.float32))
  blocks = -(-wave.shape[-1] // HOP)
  padded = np.zeros((blocks + WINDOW_FRAMES) * HOP, np.float32)
  padded[:wave.shape[-1]] = wave
  block_peak = padded.reshape(-1, HOP).max(axis=1)
  starts = np.asarray(start_frames, np.int64)
  if starts.size and (starts.min() < 0 or starts.max() >= blocks):
    raise ValueError(f"window starts {starts.min()}..{starts.max()} outside a waveform of "
                     f"{blocks} hops")
  spans = np.lib.stride_tricks.sliding_window_view(block_peak, WINDOW_FRAMES)
  peaks = spans[starts].max(axis=1)
  return 20.0 * np.log10(np.maximum(peaks, PEAK_FLOOR))


def normalise_window_levels(windows: np.ndarray, peak_db: np.ndarray,
                            cfg: FrontEndConfig = FrontEndConfig()) -> np.ndarray:
  """Log-mel windows [N, ...] as if each crop had been peak-normalised before the front end.

  `windows` must come from a log-mel computed with `amin=UNCLAMPED_AMIN`; the result
  is floored at `cfg.amin` as the training front end's output is.  Written in jnp so
  that, jitted, it fuses into the encoder's first layer.
  """
  floor_db = 10.0 * np.log10(cfg.amin)
  shift = jnp.asarray(peak_db, jnp.float32).reshape((-1,) + (1,) * (windows.ndim - 1))
  return jnp.maximum(windows - shift, floor_db)


def fingerprint_windows(wave: np.ndarray) -> np.ndarray:
  """The encoder inputs of all of a track's fingerprints [N, 64, 96, 1], level-normalised.

  The reference definition (whole-track log-mel, framed every 100 ms, each window
  at the level of its peak-normalised crop); `Fingerprinter` computes the same in chunks.
  """
  mel = np.asarray(log_mel(jnp.asarray(wave), FrontEndConfig(amin=UNCLAMPED_AMIN)))
  starts = np.arange(num_fingerprints(wave.shape[-1])) * WINDOW_HOP_FRAMES
  return np.asarray(normalise_window_levels(windows_from_mel(mel, starts),
                                            window_peak_db(wave, starts)))
