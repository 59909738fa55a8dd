"""Plot a training run's TensorBoard scalars to one PNG.

  python scripts/plot_training_curves.py WORKDIR OUT.png [STEP_OFFSET]

STEP_OFFSET is added to every step: the steps a warm-started run's starting model had already
trained, so that the axis reads steps of the recipe.  Steps logged twice (a run resumed from
an earlier checkpoint) keep their last value.
"""

import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # pylint: disable=wrong-import-position


def main(workdir: str, out: str, step_offset: int = 0) -> None:
  acc = EventAccumulator(str(Path(workdir) / "tensorboard"), size_guidance={"scalars": 0})
  acc.Reload()
  panels = [("loss", ["train/loss", "eval/loss"]), ("in-batch top-1", ["train/top1", "eval/top1"]),
            ("in-batch top-5", ["train/top5", "eval/top5"]),
            ("segments/s", ["train/segments_per_s"])]
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
  tags = set(acc.Tags()["scalars"])
  for ax, (title, names) in zip(axes, panels):
    for name in names:
      if name in tags:
        last = {e.step: e.value for e in sorted(acc.Scalars(name), key=lambda e: e.wall_time)}
        steps = sorted(last)
        ax.plot([s + step_offset for s in steps], [last[s] for s in steps],
                label=name.split("/")[0], marker="o" if name.startswith("eval") else None)
    ax.set_title(title)
    ax.set_xlabel("step of the recipe" if step_offset else "step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(out, dpi=110)


if __name__ == "__main__":
  if len(sys.argv) not in (3, 4):
    sys.exit(__doc__)
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 0)
