"""The repository's documents cite only documents that the repository contains."""

from pathlib import Path
import re

ROOT = Path(__file__).resolve().parents[2]
_SOURCES = ("nafp_jax", "input_pipeline", "configs", "benchmarks", "scripts", "launch", "tests",
            "docs")
# `docs/design.md §n` or a path like `docs/data.md`, `MODEL_CARD.md`, `benchmarks/RESULTS.md`.
_CITED_SECTION = re.compile(r"docs/design\.md §(\d)")
_CITED_PATH = re.compile(r"`((?:docs|benchmarks|scripts|launch)/[\w./-]+\.(?:md|py|sh))`")


def _files():
  yield from (ROOT / name for name in ("README.md", "MODEL_CARD.md"))
  for folder in _SOURCES:
    yield from (p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".md", ".sh"))


def test_no_file_cites_a_document_outside_the_repository():
  outside = re.compile(r"\bSPEC(\.md| §)|(?<![\w/])DATA\.md|shared/(SPEC|DATA)")
  offenders = [f"{p.relative_to(ROOT)}:{i}" for p in _files() if p != Path(__file__)
               for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
               if outside.search(line)]
  assert not offenders, offenders


def test_cited_design_sections_and_paths_exist():
  design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
  sections = set(re.findall(r"^## (\d)\. ", design, re.M))
  for p in _files():
    text = p.read_text(encoding="utf-8")
    for section in _CITED_SECTION.findall(text):
      assert section in sections, f"{p.relative_to(ROOT)} cites design.md §{section}"
    for path in _CITED_PATH.findall(text):
      assert (ROOT / path).exists(), f"{p.relative_to(ROOT)} cites {path}, which does not exist"
