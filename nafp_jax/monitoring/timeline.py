"""Monitoring results for people and programs: timeline lines, JSON Lines, CSV, a picture."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.display import printable
from nafp_jax.monitoring.tracker import Detection, Gap

CSV_FIELDS = ("recording", "event", "stream_start_s", "stream_end_s", "track_id", "track",
              "track_start_s", "track_end_s", "score", "windows")


def clock(seconds: float) -> str:
  hours, rest = divmod(max(seconds, 0.0), 3600)
  minutes, sec = divmod(rest, 60)
  return f"{int(hours):02d}:{int(minutes):02d}:{sec:04.1f}"


def event_record(cat: catalogue_lib.Catalogue, recording: str, event: Detection | Gap) -> dict:
  """One JSON Lines / CSV record: event 'detection' (final), 'started' (just confirmed,
  may still grow) or 'gap' (nothing from the catalogue)."""
  base = {"recording": recording, "stream_start_s": round(event.stream_start_s, 2),
          "stream_end_s": round(event.stream_end_s, 2)}
  if isinstance(event, Gap):
    return {**base, "event": "gap"}
  track = cat.tracks[event.track]
  return {**base, "event": "detection" if event.final else "started", "track_id": track.id,
          "track": track.name, "track_start_s": round(event.track_start_s, 2),
          "track_end_s": round(event.track_end_s, 2), "offset_s": round(float(event.offset_s), 2),
          "score": round(float(event.score), 4), "windows": event.windows}


def human_line(record: dict) -> str:
  span = f"{clock(record['stream_start_s'])}-{clock(record['stream_end_s'])}"
  if record["event"] == "gap":
    return f"{span}  (no match)"
  prefix = "now playing: " if record["event"] == "started" else ""
  return (f"{span}  {prefix}{printable(record['track'])}  "
          f"[{clock(record['track_start_s'])}-{clock(record['track_end_s'])} of the track]  "
          f"score {record['score']:.3f}, {record['windows']} windows")


def write_csv(records: Sequence[dict], path: str | Path) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(r for r in records if r["event"] != "started")


def plot(records: Sequence[dict], path: str | Path) -> None:
  """Tracks as bars over stream time (one row per track), each detection's score below."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  final = [r for r in records if r["event"] == "detection"]
  names = sorted({r["track"] for r in final})
  end = max([r["stream_end_s"] for r in records] + [1.0])
  fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 2 + 0.35 * len(names)),
                                    gridspec_kw={"height_ratios": [max(len(names), 1), 2]})
  for r in final:
    row = names.index(r["track"])
    top.barh(row, r["stream_end_s"] - r["stream_start_s"], left=r["stream_start_s"],
             height=0.6, color=f"C{row % 10}")
    bottom.hlines(r["score"], r["stream_start_s"], r["stream_end_s"], color=f"C{row % 10}",
                  linewidth=3)
  for r in records:
    if r["event"] == "gap":
      top.axvspan(r["stream_start_s"], r["stream_end_s"], color="0.92", zorder=0)
  top.set_yticks(range(len(names)), [n[-40:] for n in names], fontsize=8)
  top.set_xlim(0, end)
  top.invert_yaxis()
  bottom.set_ylim(0, 1.05)
  bottom.set_ylabel("score")
  bottom.set_xlabel("stream time (s); grey: no match")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
