"""Export fingerprints of a corpus to sharded files, one share per process, and merge them.

Layout of an export folder:
  manifest.json                        model identity, dim, process count
  process-00000/tracks.jsonl           name, path, duration, sha1, shard, row offset, rows
  process-00000/shard-00000.npy        float32 [rows, d], tracks sequential
Each process (jax.process_index() of jax.process_count()) fingerprints files
i, i+P, i+2P, ... of the sorted file list, so the shares are disjoint and the
union is every file; `iter_export` reads all shares back in file order, ready
for `catalogue.update(add=...)` or any external search system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from nafp_jax.audio import audio_io, read_ahead
from nafp_jax.catalogue import store as catalogue_lib
from nafp_jax.inference.fingerprinter import Fingerprinter
from nafp_jax.catalogue.identify import display_name, expand_inputs, fingerprint_files


def export_share(fingerprinter: Fingerprinter, inputs: Sequence[str | os.PathLike],
                 out: str | os.PathLike, process_index: int = 0, process_count: int = 1,
                 shard_rows: int = 1 << 20,
                 read_ahead_files: int = read_ahead.DEFAULT_DEPTH) -> dict:
  """Fingerprint this process's share of the files into `out`/process-XXXXX/.

  Files are hashed and decoded `read_ahead_files` ahead of the encoder (as `nafp index` does).
  """
  out = Path(out)
  folder = out / f"process-{process_index:05d}"
  check_export_folder(out, folder, fingerprinter.bundle.identity)
  files = expand_inputs(inputs)
  mine = list(range(len(files)))[process_index::process_count]  # positions in the file list
  folder.mkdir(parents=True, exist_ok=True)
  if process_index == 0:
    (out / "manifest.json").write_text(json.dumps({
        "model_identity": fingerprinter.bundle.identity, "model_source": fingerprinter.bundle.source,
        "fingerprint_version": catalogue_lib.FINGERPRINT_VERSION,
        "dim": fingerprinter.dim, "process_count": process_count, "files": len(files)}, indent=2))
  shard, rows_in_shard, buffer, skipped, records = 0, 0, [], 0, []

  def flush():
    nonlocal shard, rows_in_shard, buffer
    if buffer:
      tmp = folder / f".shard-{shard:05d}.npy.tmp"
      with open(tmp, "wb") as f:
        np.save(f, np.concatenate(buffer))
      os.replace(tmp, folder / f"shard-{shard:05d}.npy")
      shard, rows_in_shard, buffer = shard + 1, 0, []

  share = fingerprint_files(fingerprinter, [files[order] for order in mine],
                            read_ahead_files=read_ahead_files)
  for order, item in zip(mine, share):
    path, fps = item.path, item.fingerprints
    if item.problem is not None:
      skipped += 1
      continue
    records.append({"name": display_name(path, inputs), "path": str(Path(path).resolve()),
                    "duration": item.wave.shape[0] / audio_io.SAMPLE_RATE,
                    "sha1": item.sha1, "shard": shard,
                    "offset": rows_in_shard, "rows": int(fps.shape[0]),
                    "order": order})
    buffer.append(fps)
    rows_in_shard += fps.shape[0]
    if rows_in_shard >= shard_rows:
      flush()
  flush()
  tmp = folder / "tracks.jsonl.tmp"
  tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
  os.replace(tmp, folder / "tracks.jsonl")  # written last: marks the share complete
  return {"tracks": len(records), "skipped": skipped}


def check_export_folder(out: Path, share: Path, model_identity: str) -> None:
  """Refuse to write into a folder that is not an export, into a finished share, or into
  an export of another model; a share left unfinished by an interrupted run is redone."""
  if not out.exists():
    return
  if not out.is_dir():
    raise FileExistsError(f"{out}: exists and is not a folder")
  foreign = sorted(p.name for p in out.iterdir()
                   if not (p.name == "manifest.json" or p.name.startswith("process-")))
  if foreign:
    raise FileExistsError(f"{out}: not an export folder (holds {', '.join(foreign[:5])}); "
                          "export into a new or empty folder")
  manifest = out / "manifest.json"
  if manifest.exists():
    try:
      identity = json.loads(manifest.read_text()).get("model_identity")
    except (json.JSONDecodeError, AttributeError):
      raise FileExistsError(f"{manifest}: damaged; export into a new folder") from None
    if identity != model_identity:
      raise FileExistsError(f"{out}: holds an export by another model ({str(identity)[:12]}, "
                            f"this one is {model_identity[:12]}); export into a new folder")
  if (share / "tracks.jsonl").exists():
    raise FileExistsError(f"{share}: this share is already exported (tracks.jsonl); not "
                          "overwriting it. Remove the folder or export into a new one")


def read_manifest(folder: str | os.PathLike) -> dict:
  """An export's manifest; CatalogueError if its fingerprints are of another version than
  this code makes (they could not be searched together with new ones)."""
  path = Path(folder) / "manifest.json"
  try:
    manifest = json.loads(path.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"{folder}: not an export (no manifest.json)") from None
  except (OSError, ValueError) as e:
    raise catalogue_lib.CatalogueError(f"{path}: damaged ({e})") from None
  version = manifest.get("fingerprint_version", 1)
  if version != catalogue_lib.FINGERPRINT_VERSION:
    raise catalogue_lib.CatalogueError(
        f"{folder}: exported with fingerprint version {version}, this code uses version "
        f"{catalogue_lib.FINGERPRINT_VERSION}; export the audio again")
  return manifest


def iter_export(folder: str | os.PathLike) -> Iterator[tuple[dict, np.ndarray]]:
  """(track fields, fingerprints) of every complete share, in the original file order."""
  folder = Path(folder)
  manifest = read_manifest(folder)
  records = []
  for p in range(manifest["process_count"]):
    share = folder / f"process-{p:05d}"
    if not (share / "tracks.jsonl").exists():
      raise FileNotFoundError(f"{share}: share missing or incomplete (no tracks.jsonl)")
    for line in (share / "tracks.jsonl").read_text().splitlines():
      records.append((share, json.loads(line)))
  records.sort(key=lambda sr: sr[1]["order"])
  for share, r in records:
    shard = np.load(share / f"shard-{r['shard']:05d}.npy", mmap_mode="r")
    yield ({k: r[k] for k in ("name", "path", "duration", "sha1")},
           np.asarray(shard[r["offset"]:r["offset"] + r["rows"]], np.float32))
