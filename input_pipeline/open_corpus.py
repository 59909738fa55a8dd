"""Fetch the open corpus of real music, noise and speech from Debian packages (docs/data.md).

  python -m input_pipeline.open_corpus fetch [--splits train,dev,noise] [--cache DIR]
  python -m input_pipeline.open_corpus status

Game soundtracks in Debian main (DFSG-free) are downloaded with `apt-get download`
(no root needed), only their audio is unpacked (`dpkg-deb --fsys-tarfile`, zip/pk3
archives inside too), and the result is laid out as
  <cache>/open_corpus/<split>/<package>/<path inside the package>
with <cache>/open_corpus/manifest.tsv (path, package, split, duration, licence, sha1).
Splits are by package: nothing of DEV is ever used for training or calibration.
Each package is unpacked into a temporary folder, checked, and renamed into place,
so an interrupted fetch never leaves an entry a later run trusts; a package that
fails is reported and the rest goes on; re-running is a no-op.  Exact duplicates
(by content) and the known near-duplicates (`_NEAR_DUPLICATES`) are kept once.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
from pathlib import Path, PurePosixPath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np
import soundfile as sf

from nafp_jax.audio import audio_io

MIN_MUSIC_S = 20.0
_MUSIC_DIRS = re.compile(r"/(music|musics|tunes|cdtracks|songs|stdmusic)/", re.I)


@dataclasses.dataclass(frozen=True)
class Rule:
  """Which files of a package go to which split."""
  split: str                     # 'train' | 'dev' | 'noise' | 'speech'
  pattern: re.Pattern | None     # path must match (None: the generic music-folder rule)
  min_seconds: float = 0.0


def _r(split: str, pattern: str | None = None, min_seconds: float = 0.0) -> Rule:
  return Rule(split, re.compile(pattern, re.I) if pattern else None, min_seconds)


_TRAIN_MUSIC = [
    "warzone2100-music", "planetblupi-music-ogg", "wesnoth-1.16-music", "supertux-data",
    "widelands-data", "singularity-music", "supertuxkart-data", "freedroidrpg-data",
    "unknown-horizons", "flare-game", "trackballs-data", "pushover-data", "megaglest-data",
    "starfighter-data", "fretsonfire-songs-sectoid", "fretsonfire-songs-muldjord", "warmux-data",
    "openclonk-data", "fillets-ng-data", "davegnukem-data", "hyperrogue-music", "zaz-data",
    "asc-music", "freecol", "ardentryst", "lordsawar-data", "frozen-bubble-data", "xmoto-data",
    "btanks-data", "freeorion-data", "lincity-ng-data", "plee-the-bear-data",
    "extremetuxracer-data", "powermanga-data", "gigalomania-data", "scorched3d-data",
    "lugaru-data", "cube2-data", "freeciv-data"]
_DEV_MUSIC = ["nexuiz-music", "colobot-common-sounds", "marsshooter-data", "drascula-music"]

# Package-specific music places beyond the generic music-folder rule.
_SPECIAL_MUSIC = {
    "drascula-music": r"drascula/audio/", "pushover-data": r"pushover/themes",
    "asc-music": r"asc/music", "frozen-bubble-data": r"frozen-bubble/snd/.*zik",
    "lugaru-data": r"lugaru/Sounds/Music", "marsshooter-data": r"marsshooter/audio/(menu|tutorial)",
    "powermanga-data": r"powermanga/.*/music_", "zaz-data": r"zaz/mus",
    "freedroidrpg-data": r"freedroidrpg/.*/titles/", "freecol": r"freecol/base/resources/sound/intro",
    "supertuxkart-data": r"supertuxkart/data/tracks/(battleisland|ancient_colosseum_labyrinth|cave)/",
    "nexuiz-music": r"\.pk3$", "openclonk-data": r"openclonk/Music\.ocg/",
    "freeorion-data": r"freeorion/default/data/sound/[^/]+\.ogg$",
}
_NOISE = {
    "megaglest-data": r"tilesets/[^/]+/sounds/", "btanks-data": r"sounds/ambient",
    "widelands-data": r"sound/(ambient|animals)", "flare-game": r"soundfx/(environment|ambient)",
    "scorched3d-data": r"data/wav/(ambient|weather)", "lugaru-data": r"Sounds/(fire|wind|river)",
    "unknown-horizons": r"sounds/(ambient|environment)", "plee-the-bear-data": r"sound/(ambient|forest)",
    "supertuxkart-data": r"sfx/(radio|announcement|locomotive)", "searchandrescue-data": r"engine",
}
_SPEECH = {"asterisk-core-sounds-fr-wav": r"\.wav$", "asterisk-core-sounds-es-wav": r"\.wav$"}

# Near-duplicates across or inside packages: the second of each pair is dropped (sha1 catches exact ones).
_NEAR_DUPLICATES = [r"megaglest.*romans", r"singularity.*Through Space", r"warmux.*Apnee2",
                    r"warzone.*menu_enhanced", r"warzone.*track3_enhanced", r"ardentryst.*theme1_raw",
                    r"supertuxkart.*_fast\."]


def package_rules() -> dict[str, list[Rule]]:
  """Every package of the corpus and the rules that pick its files."""
  rules: dict[str, list[Rule]] = {}
  for split, names in (("train", _TRAIN_MUSIC), ("dev", _DEV_MUSIC)):
    for name in names:
      rules.setdefault(name, []).append(_r(split, None, MIN_MUSIC_S))
      if name in _SPECIAL_MUSIC:
        rules[name].append(_r(split, _SPECIAL_MUSIC[name], MIN_MUSIC_S))
  for name, pattern in _NOISE.items():
    rules.setdefault(name, []).append(_r("noise", pattern, 1.0))
  for name, pattern in _SPEECH.items():
    rules.setdefault(name, []).append(_r("speech", pattern, 0.3))
  return rules


def _split_for(path: str, rules: list[Rule]) -> Rule | None:
  for rule in rules:
    if rule.pattern is None:
      if rule.split in ("train", "dev") and _MUSIC_DIRS.search("/" + path):
        return rule
    elif rule.pattern.search(path):
      return rule
  return None


def corpus_root(cache: Path) -> Path:
  return cache / "open_corpus"


def _download(package: str, workdir: Path) -> Path:
  """apt-get download into workdir; returns the verified .deb."""
  result = subprocess.run(["apt-get", "download", package], cwd=workdir, capture_output=True,
                          text=True, check=False)
  debs = list(workdir.glob(f"{package}_*.deb"))
  if result.returncode != 0 or not debs:
    raise RuntimeError(f"apt-get download {package} failed: {result.stderr.strip()[-300:]}")
  check = subprocess.run(["dpkg-deb", "--info", str(debs[0])], capture_output=True, check=False)
  if check.returncode != 0:
    raise RuntimeError(f"{debs[0]}: not a valid package")
  return debs[0]


def _licence(text: str) -> str:
  found = sorted(set(m.strip() for m in re.findall(r"^License:\s*(.+)$", text, re.M)))
  return "; ".join(found)[:200] or "see copyright"


def safe_member_name(name: str) -> str | None:
  """An archive member's name as a relative path inside the output folder, or None for one
  that would land outside it (absolute, or with a '..' part)."""
  path = PurePosixPath(name)
  if path.is_absolute() or ".." in path.parts or "\\" in name:
    return None
  return path.as_posix()


def _extract(deb: Path, rules: list[Rule], out: Path) -> tuple[list[tuple[Path, str]], str]:
  """Stream the package's data tar; write selected audio under out/<split>/. (path, split) list."""
  written, licence = [], "see copyright"
  proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
  with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
    for member in tar:
      if not member.isfile():
        continue
      name = safe_member_name(member.name[2:] if member.name.startswith("./") else member.name)
      if name is None:
        print(f"{deb}: skipping archive member with an unsafe name {member.name!r}",
              file=sys.stderr)
        continue
      if name.endswith("/copyright") and "/doc/" in name:
        licence = _licence(tar.extractfile(member).read().decode("utf-8", "replace"))
        continue
      rule = _split_for(name, rules)
      if rule is None:
        continue
      if name.lower().endswith((".pk3", ".zip")):
        data = tar.extractfile(member).read()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
          for inner in archive.namelist():
            if audio_io.is_audio_path(inner):
              if safe_member_name(inner) is None:
                print(f"{deb}: skipping {name} member with an unsafe name {inner!r}",
                      file=sys.stderr)
                continue
              target = out / rule.split / name / inner
              target.parent.mkdir(parents=True, exist_ok=True)
              target.write_bytes(archive.read(inner))
              written.append((target, rule.split))
        continue
      if not audio_io.is_audio_path(name):
        continue
      target = out / rule.split / name
      target.parent.mkdir(parents=True, exist_ok=True)
      with tar.extractfile(member) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
      written.append((target, rule.split))
  if proc.wait() != 0:
    raise RuntimeError(f"{deb}: dpkg-deb failed to unpack")
  return written, licence


def fetch_package(package: str, rules: list[Rule], root: Path) -> str:
  """Download and unpack one package into root/<split>/<package>/ (atomic per package)."""
  done = root / ".done" / package
  if done.exists():
    return "cached"
  tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{package}-", dir=root))
  try:
    deb = _download(package, tmp)
    files, licence = _extract(deb, rules, tmp / "out")
    deb.unlink()
    kept = []
    for path, split in files:
      min_s = next(r.min_seconds for r in rules if r.split == split)
      try:
        info = sf.info(str(path))
        duration = info.frames / info.samplerate
      except Exception:  # pylint: disable=broad-except  (unreadable: drop, decoder warns later)
        path.unlink()
        continue
      if duration < min_s:
        path.unlink()
        continue
      kept.append((path.relative_to(tmp / "out" / split), split, duration))
    lines = []
    for rel, split, duration in kept:
      final = root / split / package / rel
      final.parent.mkdir(parents=True, exist_ok=True)
      os.replace(tmp / "out" / split / rel, final)
      sha1 = audio_io.content_hash(final)
      lines.append(f"{final.relative_to(root)}\t{package}\t{split}\t{duration:.2f}\t{licence}\t{sha1}")
    done.parent.mkdir(parents=True, exist_ok=True)
    tmp_done = done.with_suffix(".tmp")
    tmp_done.write_text("\n".join(lines) + ("\n" if lines else ""))
    os.replace(tmp_done, done)  # the package counts as fetched only now
    return f"{len(lines)} file(s)"
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _near_duplicate(path: str) -> bool:
  return any(re.search(p, path, re.I) for p in _NEAR_DUPLICATES)


def write_manifest(root: Path) -> Path:
  """Merge per-package records, drop duplicates (content, then the near-duplicate list), write the TSV."""
  rows, seen = [], {}
  order = {"train": 0, "dev": 1, "noise": 2, "speech": 3}
  records = []
  for done in sorted((root / ".done").glob("*")):
    if done.suffix == ".tmp":
      continue
    records += [line.split("\t") for line in done.read_text().splitlines() if line]
  records.sort(key=lambda r: (order[r[2]], r[0]))
  for path, package, split, duration, licence, sha1 in records:
    if split in ("train", "dev") and (sha1 in seen or _near_duplicate(path)):
      dup = root / path
      if dup.exists():
        dup.unlink()
      continue
    seen[sha1] = path
    rows.append("\t".join([path, package, split, duration, licence, sha1]))
  manifest = root / "manifest.tsv"
  tmp = manifest.with_suffix(".tmp")
  tmp.write_text("path\tpackage\tsplit\tduration_s\tlicence\tsha1\n" + "\n".join(rows) + "\n")
  os.replace(tmp, manifest)
  return manifest


def make_babble(root: Path, files: int = 40, seconds: float = 30.0, seed: int = 0) -> int:
  """Mix 4-8 speech prompts at random offsets into babble noise files (noise/babble/)."""
  prompts = sorted((root / "speech").rglob("*.wav"))
  out = root / "noise" / "babble"
  if not prompts or (out / ".complete").exists():
    return 0
  out.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  n = int(seconds * audio_io.SAMPLE_RATE)
  for i in range(files):
    mix = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(4, 9))):
      voice = np.zeros(n, np.float32)
      pos = 0
      while pos < n:  # one talker: prompts back to back with short pauses
        p = audio_io.load_audio(prompts[int(rng.integers(len(prompts)))], allow_silent=True)
        pos += int(rng.integers(0, audio_io.SAMPLE_RATE // 2))
        if pos >= n:
          break
        take = min(p.size, n - pos)
        voice[pos:pos + take] = p[:take] / (np.std(p) + 1e-6)
        pos += take
      mix += voice * rng.uniform(0.5, 1.0)
    sf.write(out / f"babble{i:03d}.wav", 0.9 * mix / np.abs(mix).max(), audio_io.SAMPLE_RATE,
             subtype="PCM_16")
  (out / ".complete").write_text("ok\n")
  return files


def fetch(cache: Path, splits: set[str], packages: list[str] | None = None) -> int:
  """Fetch every package that has a rule for one of `splits`; returns the number that failed."""
  root = corpus_root(cache)
  root.mkdir(parents=True, exist_ok=True)
  for stale in root.glob(".tmp-*"):
    shutil.rmtree(stale, ignore_errors=True)
  failed = 0
  for package, rules in package_rules().items():
    if packages and package not in packages:
      continue
    wanted = [r for r in rules if r.split in splits or (r.split == "speech" and "noise" in splits)]
    if not wanted:
      continue
    try:
      status = fetch_package(package, rules, root)
      print(f"{package}: {status}", flush=True)
    except Exception as e:  # pylint: disable=broad-except  (report and go on)
      failed += 1
      print(f"{package}: FAILED ({e})", file=sys.stderr, flush=True)
  if "noise" in splits:
    make_babble(root)
  manifest = write_manifest(root)
  print(f"manifest: {manifest}")
  return failed


def status(cache: Path) -> None:
  manifest = corpus_root(cache) / "manifest.tsv"
  if not manifest.exists():
    print("nothing fetched yet")
    return
  totals: dict[str, list[float]] = {}
  for line in manifest.read_text().splitlines()[1:]:
    split, duration = line.split("\t")[2], float(line.split("\t")[3])
    totals.setdefault(split, []).append(duration)
  for split, durations in sorted(totals.items()):
    print(f"{split:<7} {len(durations):>5} files {sum(durations) / 3600:7.2f} h")


def main(argv=None) -> int:
  from input_pipeline.sources import cache_root  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(prog="python -m input_pipeline.open_corpus",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("command", choices=["fetch", "status"])
  parser.add_argument("--splits", default="train,dev,noise")
  parser.add_argument("--packages", help="comma-separated subset of packages")
  parser.add_argument("--cache", default=str(cache_root()))
  args = parser.parse_args(argv)
  cache = Path(args.cache).expanduser()
  if args.command == "status":
    status(cache)
    return 0
  failed = fetch(cache, set(args.splits.split(",")),
                 args.packages.split(",") if args.packages else None)
  status(cache)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
