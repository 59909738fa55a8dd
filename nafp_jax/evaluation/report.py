"""Hit-rate tables in the layout of the paper's Tables 1-2, a CSV, and PNG plots."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from nafp_jax.evaluation import query_sets

FIELDS = ["method", "condition", "snr_db", "t60_s", "length_s", "queries",
          "segment_hit_rate", "audio_hit_rate"]


# Conditions whose tables run over SNR (at one T60, if any); all others run over T60.
_SNR_COLUMNS = ("noise", "noise+reverb")
_HELD_OUT = query_sets.ROOMS_KINDS + query_sets.UNSEEN_KINDS


def _column(row: dict) -> float:
  return row["snr_db"] if row["condition"] in _SNR_COLUMNS else row["t60_s"]


def _unit(condition: str) -> str:
  return "SNR (dB)" if condition in _SNR_COLUMNS else "T60 (s)"


def _title(level: str, condition: str, rows: Sequence[dict]) -> str:
  """'Segment-level top-1 hit rate (%), noise+reverb, T60 0.5 s; columns: SNR (dB)'."""
  extra = ""
  if condition == "noise+reverb":
    extra = f", T60 {rows[0]['t60_s']:g} s"
  elif condition == "room+noise":
    extra = f", SNR {rows[0]['snr_db']:g} dB"
  if condition in _HELD_OUT:
    extra += ", held-out rooms"
  return f"{level} top-1 hit rate (%), {condition}{extra}; columns: {_unit(condition)}"


def format_tables(rows: Sequence[dict]) -> str:
  """Per level, condition and method: rows = query length, columns = SNR (dB) or T60 (s)."""
  out = []
  width = max([16] + [len(str(r["method"])) for r in rows])
  for level, key in (("Segment-level", "segment_hit_rate"), ("Audio-level", "audio_hit_rate")):
    for condition in dict.fromkeys(r["condition"] for r in rows):
      sub = [r for r in rows if r["condition"] == condition]
      if condition == "clips":
        out.append(f"{level} top-1 hit rate (%), pre-made clips")
        out += [f"  {r['method']:<24} {100 * r[key]:6.1f}  (n={r['queries']})" for r in sub]
        continue
      cols = sorted(dict.fromkeys(_column(r) for r in sub))
      out.append(_title(level, condition, sub))
      out.append(f"  {'method':<{width}} {'length':>6} " + " ".join(f"{c:>6g}" for c in cols))
      for method in dict.fromkeys(r["method"] for r in sub):
        for length in sorted(dict.fromkeys(r["length_s"] for r in sub)):
          cells = {_column(r): r for r in sub if r["method"] == method and r["length_s"] == length}
          out.append(f"  {method:<{width}} {length:>5g}s " +
                     " ".join(f"{100 * cells[c][key]:6.1f}" if c in cells else "     -"
                              for c in cols))
      out.append("")
  return "\n".join(out)


def format_markdown(rows: Sequence[dict],
                    reported: dict | None = None) -> str:
  """Markdown tables (level x condition; rows = method and query length) beside the paper's.

  `reported` is keyed like `paper_reference.REPORTED` (the default); its rows for the query
  lengths measured here are added under each table, and each table ends with the measured
  minus the paper's attention model, in points, over the cells both have (one line per method
  when there are several; length None in `reported` = any query length).
  """
  from nafp_jax.evaluation import paper_reference  # pylint: disable=g-import-not-at-top
  reported = paper_reference.REPORTED if reported is None else reported
  out = []
  for level, key in (("segment", "segment_hit_rate"), ("audio", "audio_hit_rate")):
    for condition in dict.fromkeys(r["condition"] for r in rows if r["condition"] != "clips"):
      sub = [r for r in rows if r["condition"] == condition]
      lengths = set(r["length_s"] for r in sub)
      refs = {length: by_method for (lv, cond, length), by_method in reported.items()
              if lv == level and cond == condition and (length is None or length in lengths)}
      cols = sorted(set(_column(r) for r in sub) |
                    {c for by_method in refs.values() for v in by_method.values() for c in v})
      out.append(_title(f"{level.capitalize()}-level", condition, sub) + "\n")
      out.append("| method | length | " + " | ".join(f"{c:g}" for c in cols) + " |")
      out.append("|---|---|" + "---|" * len(cols))
      gaps = {}  # method -> measured minus the paper's attention model, per cell
      for method in dict.fromkeys(r["method"] for r in sub):
        for length in sorted(dict.fromkeys(r["length_s"] for r in sub)):
          cells = {_column(r): 100 * r[key] for r in sub
                   if r["method"] == method and r["length_s"] == length}
          out.append(f"| {method} | {length:g} s | " +
                     " | ".join(f"{cells[c]:.1f}" if c in cells else "–" for c in cols) + " |")
          paper = refs.get(length, refs.get(None, {})).get(paper_reference.PAPER, {})
          gaps.setdefault(method, []).extend(cells[c] - paper[c] for c in cells if c in paper)
      for length, by_method in sorted(refs.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
        for method, values in by_method.items():
          shown = "not stated" if length is None else f"{length:g} s"
          out.append(f"| {method} | {shown} | " +
                     " | ".join(f"{values[c]:.1f}" if c in values else "–" for c in cols) + " |")
      gaps = {m: g for m, g in gaps.items() if g}
      if gaps:
        out.append("")
      for method, g in gaps.items():
        who = f"{method} " if len(gaps) > 1 else ""
        out.append(f"Measured {who}minus {paper_reference.PAPER}: {min(g):+.1f} to "
                   f"{max(g):+.1f} points over {len(g)} cell{'s' * (len(g) > 1)}.")
      out.append("")
  return "\n".join(out)


def write_csv(rows: Sequence[dict], path: Path) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
  """Rows written by `write_csv` (`nafp eval`'s hit_rates.csv), with their types restored."""
  def number(text: str) -> float | None:
    return float(text) if text != "" else None
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = set(FIELDS) - set(reader.fieldnames or [])
    if missing:
      raise ValueError(f"{path}: not a hit-rate CSV (no column(s) {sorted(missing)})")
    rows = []
    for line, r in enumerate(reader, start=2):
      try:
        rows.append({"method": r["method"], "condition": r["condition"],
                     "snr_db": number(r["snr_db"]), "t60_s": number(r["t60_s"]),
                     "length_s": number(r["length_s"]), "queries": int(r["queries"]),
                     "segment_hit_rate": float(r["segment_hit_rate"]),
                     "audio_hit_rate": float(r["audio_hit_rate"])})
      except (TypeError, ValueError) as e:
        raise ValueError(f"{path}:{line}: bad hit-rate row ({e})") from None
    return rows


def plot(rows: Sequence[dict], folder: Path, reported: dict | None = None) -> list[Path]:
  """Segment-level hit rate vs SNR (or T60) per query length; one PNG per condition.

  One solid line per method; the paper's reported segment-level figures for the same
  condition and query length (`reported`, default `paper_reference.REPORTED`) as dashed
  lines beside them.
  """
  from nafp_jax.evaluation import paper_reference  # pylint: disable=g-import-not-at-top
  reported = paper_reference.REPORTED if reported is None else reported
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  folder.mkdir(parents=True, exist_ok=True)
  written = []
  for condition in dict.fromkeys(r["condition"] for r in rows if r["condition"] != "clips"):
    sub = [r for r in rows if r["condition"] == condition]
    lengths = sorted(dict.fromkeys(r["length_s"] for r in sub))
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.2 * len(lengths), 3.2), sharey=True,
                             squeeze=False)
    for ax, length in zip(axes[0], lengths):
      for method in dict.fromkeys(r["method"] for r in sub):
        pts = sorted((_column(r), r["segment_hit_rate"]) for r in sub
                     if r["method"] == method and r["length_s"] == length)
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=method)
      for method, values in reported.get(("segment", condition, length), {}).items():
        ax.plot(sorted(values), [values[c] for c in sorted(values)], linestyle="--",
                marker="x", label=method)
      ax.set_title(f"{length:g} s queries")
      ax.set_xlabel(_unit(condition))
      ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("segment-level top-1 hit rate (%)")
    handles = {}  # every line's label once, whichever panel drew it (paper rows differ by length)
    for ax in axes[0]:
      for handle, label in zip(*ax.get_legend_handles_labels()):
        handles.setdefault(label, handle)
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize="small")
    fig.suptitle(condition)
    fig.tight_layout()
    path = folder / f"hit_rate_{condition.replace('+', '_')}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
  return written
