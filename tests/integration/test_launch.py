"""launch/tpu_vm.sh: ships only what it checked, prints pasteable commands."""

import os
from pathlib import Path
import shlex
import shutil
import subprocess

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PROJECT": "p", "ZONE": "us-central2-b", "TPU_NAME": "nafp", "ACCELERATOR_TYPE": "v4-32",
       "WORKDIR": "gs://b/runs/x", "DATA_DIR": "gs://b/tfds",
       "EXTRA_FLAGS": "--config.data.tracks=fma:full --config.num_train_steps=10"}


def _repo(tmp_path: Path) -> Path:
  repo = tmp_path / "repo"
  (repo / "launch").mkdir(parents=True)
  (repo / "configs").mkdir()
  shutil.copy(ROOT / "launch" / "tpu_vm.sh", repo / "launch")
  shutil.copy(ROOT / "configs" / "large_batch_tpu.py", repo / "configs")
  git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
  subprocess.run(git[:3] + ["init", "-q"], check=True)
  subprocess.run(git + ["add", "-A"], check=True)
  subprocess.run(git + ["commit", "-q", "-m", "init"], check=True)
  return repo


def _dry_run(repo: Path, action: str) -> subprocess.CompletedProcess:
  return subprocess.run(["bash", str(repo / "launch" / "tpu_vm.sh"), "--dry-run", action],
                        env={**os.environ, **ENV}, capture_output=True, text=True, check=False)


def test_setup_refuses_uncommitted_changes_naming_them(tmp_path):
  repo = _repo(tmp_path)
  (repo / "configs" / "my_run.py").write_text("# not committed\n")
  for action in ("setup", "all"):
    result = _dry_run(repo, action)
    assert result.returncode == 2, result
    assert "configs/my_run.py" in result.stderr and "commit" in result.stderr
    assert "gcloud" not in result.stdout  # nothing was run, not even printed as run


def test_dry_run_prints_pasteable_commands(tmp_path):
  repo = _repo(tmp_path)
  result = _dry_run(repo, "train")
  assert result.returncode == 0, result.stderr
  line = next(l for l in result.stdout.splitlines() if l.startswith("+ gcloud"))
  words = shlex.split(line[2:])  # the printed line parses back into the same words
  command = words[words.index("--command") + 1]
  assert "--config.data.tracks=fma:full --config.num_train_steps=10" in command
  assert "setsid nohup" in command and "~/nafp-train.log" in command
  follow = shlex.split(result.stdout.splitlines()[-1])
  assert follow[0] == "gcloud" and follow[-2:] == ["--command", "tail -f ~/nafp-train.log"]
