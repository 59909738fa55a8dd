"""The DEV score: one fixed, quick subset of both condition families, for comparing recipes.

22 cells at 200 queries each, 1 s (0.96 s) and 3 s queries:
  paper family  noise 0 and 10 dB; reverb T60 0.5 and 0.8 s; noise+reverb (T60 0.5 s)
                at 0 and 10 dB;
  rooms family  held-out rooms at T60 1, 2 and 3 s; the same at T60 2 s with noise at
                10 dB; the loudspeaker-and-microphone chain in a T60 1.5 s room.
The summary is the mean segment- and audio-level hit rate of each family's cells.
The cells, counts and seed are fixed here so that every score is comparable.
"""

from __future__ import annotations

from typing import Sequence

from nafp_jax.evaluation.query_sets import Condition, PAPER_KINDS, ROOMS_KINDS

LENGTHS_S = (0.96, 3.0)
QUERIES = 200
SEED = 0
CONDITIONS = (
    Condition("noise", snr_db=0.0), Condition("noise", snr_db=10.0),
    Condition("reverb", t60_s=0.5), Condition("reverb", t60_s=0.8),
    Condition("noise+reverb", snr_db=0.0, t60_s=0.5),
    Condition("noise+reverb", snr_db=10.0, t60_s=0.5),
    Condition("room", t60_s=1.0), Condition("room", t60_s=2.0), Condition("room", t60_s=3.0),
    Condition("room+noise", snr_db=10.0, t60_s=2.0),
    Condition("device", t60_s=1.5),
)
FAMILIES = {"paper": PAPER_KINDS, "rooms": ROOMS_KINDS}


def summarize(rows: Sequence[dict]) -> dict[str, dict[str, dict[str, float]]]:
  """{method: {family: {'segment': %, 'audio': %, 'cells': n}}}: unweighted means of cells."""
  out = {}
  for method in dict.fromkeys(r["method"] for r in rows):
    out[method] = {}
    for family, kinds in FAMILIES.items():
      cells = [r for r in rows if r["method"] == method and r["condition"] in kinds]
      if cells:
        out[method][family] = {
            "segment": 100 * sum(r["segment_hit_rate"] for r in cells) / len(cells),
            "audio": 100 * sum(r["audio_hit_rate"] for r in cells) / len(cells),
            "cells": len(cells)}
  return out


def summary_lines(summary: dict) -> list[str]:
  """One line per method: 'DEV score <method>: paper 61.2 / 84.0 | rooms 20.5 / 41.3 ...'."""
  lines = []
  for method, families in summary.items():
    parts = [f"{family} {v['segment']:.1f} / {v['audio']:.1f}" for family, v in families.items()]
    lines.append(f"DEV score {method}: " + " | ".join(parts) +
                 "  (mean segment / audio-level top-1 hit rate, %)")
  return lines
