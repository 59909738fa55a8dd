"""Merge the hit-rate CSVs of several `nafp eval` runs into one set of tables and plots.

  python scripts/compare_eval_runs.py RUN_A/hit_rates.csv RUN_B/hit_rates.csv --out DIR

For methods evaluated in separate runs (each model on its own catalogue, or one grid
finished over several sessions): writes DIR/hit_rates.csv, DIR/hit_rates.md (the
paper's figures beside each table, as `nafp eval` writes) and one PNG per condition
with every method's segment-level curves, and prints for each pair of methods in how
many (cell, level) comparisons the first is ahead (nafp_jax/evaluation/comparison.py).
A cell given twice must agree; otherwise the merge is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from nafp_jax.evaluation import comparison, report


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("csvs", nargs="+", type=Path, help="hit_rates.csv files of `nafp eval`")
  parser.add_argument("--out", required=True, type=Path, help="folder for the merged outputs")
  parser.add_argument("--rename", action="append", default=[], metavar="OLD=NEW",
                      help="show method OLD as NEW (repeatable), e.g. a run's label as a model name")
  args = parser.parse_args(argv)
  names = dict(item.split("=", 1) for item in args.rename if "=" in item)
  if len(names) != len(args.rename):
    print("error: --rename takes OLD=NEW", file=sys.stderr)
    return 2
  clobbered = [p for p in args.csvs if p.resolve().parent == args.out.resolve()]
  if clobbered:
    print(f"error: --out {args.out} holds input {clobbered[0]}; it would be overwritten",
          file=sys.stderr)
    return 2
  try:
    rows = comparison.merge([report.read_csv(p) for p in args.csvs])
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  rows = [{**r, "method": names.get(r["method"], r["method"])} for r in rows]
  args.out.mkdir(parents=True, exist_ok=True)
  report.write_csv(rows, args.out / "hit_rates.csv")
  (args.out / "hit_rates.md").write_text(report.format_markdown(rows))
  plots = report.plot(rows, args.out)
  methods = list(dict.fromkeys(r["method"] for r in rows))
  for i, a in enumerate(methods):
    for b in methods[i + 1:]:
      print(comparison.describe(rows, a, b))
  print(f"wrote {args.out / 'hit_rates.csv'}, {args.out / 'hit_rates.md'}" +
        "".join(f", {p}" for p in plots))
  return 0


if __name__ == "__main__":
  sys.exit(main())
