"""The Debian open-corpus fetcher on locally built packages (no network)."""

import io
from pathlib import Path
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import soundfile as sf

from input_pipeline import open_corpus
from tests.audio_fixtures import tone

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _build_deb(tmp: Path, package: str, files: dict[str, bytes]) -> Path:
  root = tmp / f"{package}-build"
  (root / "DEBIAN").mkdir(parents=True)
  (root / "DEBIAN" / "control").write_text(
      f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
      "Description: test\n")
  for rel, data in files.items():
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
  deb = tmp / f"{package}_1.0_all.deb"
  subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                 capture_output=True)
  return deb


def _ogg(seconds: float, freq: float) -> bytes:
  buf = io.BytesIO()
  sf.write(buf, tone(seconds, 16000, freq), 16000, format="OGG")
  return buf.getvalue()


def test_fetch_extracts_splits_dedupes_and_is_idempotent(tmp_path, monkeypatch):
  pk3 = io.BytesIO()
  with zipfile.ZipFile(pk3, "w") as z:
    z.writestr("sound/cdtracks/track9.ogg", _ogg(25, 300))
    z.writestr("maps/readme.txt", "not audio")
  intro = _ogg(22, 440)  # the same bytes twice (Ogg streams carry random serial numbers)
  debs = {
      "nexuiz-music": _build_deb(tmp_path, "nexuiz-music", {
          "usr/share/games/nexuiz/data/music.pk3": pk3.getvalue(),
          "usr/share/doc/nexuiz-music/copyright": b"License: GPL-2+\n"}),
      "megaglest-data": _build_deb(tmp_path, "megaglest-data", {
          "usr/share/games/megaglest/data/music/intro.ogg": intro,
          "usr/share/games/megaglest/data/music/short.ogg": _ogg(5, 500),        # < 20 s: dropped
          "usr/share/games/megaglest/techs/music/romans.ogg": _ogg(21, 470),     # near-duplicate
          "usr/share/games/megaglest/data/music/zcopy.ogg": intro,        # exact duplicate
          "usr/share/games/megaglest/tilesets/forest/sounds/wind.ogg": _ogg(3, 90),
          "usr/share/doc/megaglest-data/copyright": b"License: CC-BY-SA-3.0\n"}),
  }
  calls = []

  def fake_download(package, workdir):
    calls.append(package)
    if package not in debs:
      raise RuntimeError(f"apt-get download {package} failed: unable to locate package")
    return Path(shutil.copy(debs[package], workdir))

  monkeypatch.setattr(open_corpus, "_download", fake_download)
  packages = ["nexuiz-music", "megaglest-data", "no-such-package"]
  monkeypatch.setattr(open_corpus, "_TRAIN_MUSIC", ["megaglest-data", "no-such-package"])
  failed = open_corpus.fetch(tmp_path / "cache", {"train", "dev", "noise"}, packages)
  assert failed == 1
  root = tmp_path / "cache" / "open_corpus"
  lines = (root / "manifest.tsv").read_text().splitlines()
  rows = {l.split("\t")[0]: l.split("\t") for l in lines[1:]}
  assert set(rows) == {
      "dev/nexuiz-music/usr/share/games/nexuiz/data/music.pk3/sound/cdtracks/track9.ogg",
      "train/megaglest-data/usr/share/games/megaglest/data/music/intro.ogg",
      "noise/megaglest-data/usr/share/games/megaglest/tilesets/forest/sounds/wind.ogg"}
  dev = rows["dev/nexuiz-music/usr/share/games/nexuiz/data/music.pk3/sound/cdtracks/track9.ogg"]
  assert dev[1:3] == ["nexuiz-music", "dev"] and abs(float(dev[3]) - 25) < 0.1
  assert dev[4] == "GPL-2+"
  for path in rows:
    assert (root / path).exists()
  assert not (root / "train/megaglest-data/usr/share/games/megaglest/data/music/zcopy.ogg").exists()
  assert not list(root.glob(".tmp-*"))

  calls.clear()
  assert open_corpus.fetch(tmp_path / "cache", {"train", "dev", "noise"}, packages) == 1
  assert calls == ["no-such-package"]  # fetched packages are not downloaded again
  assert (root / "manifest.tsv").read_text().splitlines() == lines


def test_interrupted_package_is_not_trusted(tmp_path, monkeypatch):
  deb = _build_deb(tmp_path, "drascula-music", {
      "usr/share/scummvm/drascula/audio/track1.ogg": _ogg(21, 200)})

  def broken_extract(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(open_corpus, "_download", lambda p, w: Path(shutil.copy(deb, w)))
  monkeypatch.setattr(open_corpus, "_extract", broken_extract)
  with pytest.raises(KeyboardInterrupt):
    open_corpus.fetch(tmp_path / "c", {"dev"}, ["drascula-music"])
  root = tmp_path / "c" / "open_corpus"
  assert not (root / ".done" / "drascula-music").exists() and not list(root.glob(".tmp-*"))
  monkeypatch.undo()
  monkeypatch.setattr(open_corpus, "_download", lambda p, w: Path(shutil.copy(deb, w)))
  assert open_corpus.fetch(tmp_path / "c", {"dev"}, ["drascula-music"]) == 0
  assert len((root / "manifest.tsv").read_text().splitlines()) == 2
  assert np.isclose(float((root / "manifest.tsv").read_text().splitlines()[1].split("\t")[3]), 21,
                    atol=0.1)


def test_archive_members_that_would_land_outside_are_refused():
  from input_pipeline.open_corpus import safe_member_name  # pylint: disable=g-import-not-at-top
  assert safe_member_name("usr/share/game/music/a.ogg") == "usr/share/game/music/a.ogg"
  assert safe_member_name("music/./b.ogg") == "music/b.ogg"
  for bad in ("/etc/passwd.ogg", "../escape.ogg", "music/../../escape.ogg", "..",
              "music\\\\..\\\\x.ogg"):
    assert safe_member_name(bad) is None, bad
