"""The package's layering (docs/layout.md): each part imports only the parts below it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Part -> the project parts it may import.  A part is a folder of nafp_jax/, input_pipeline/,
# or one of nafp_jax's top-level modules; front ends (cli, catalogue_commands, stream_commands,
# demo, main) may import anything and are not listed.
ALLOWED = {
    "audio": set(),
    "sharding": set(),
    "display": set(),
    "search": set(),
    "models": {"audio"},
    "input_pipeline": {"audio"},
    "inference": {"audio", "models", "sharding"},
    "training": {"audio", "models", "sharding", "input_pipeline", "inference"},
    "catalogue": {"audio", "models", "inference", "search", "display"},
    "monitoring": {"audio", "inference", "search", "catalogue", "display"},
    "service": {"audio", "inference", "search", "catalogue", "display"},
    "evaluation": {"audio", "models", "inference", "search", "catalogue", "display",
                   "input_pipeline", "monitoring"},
}
FRONT_ENDS = {"cli", "catalogue_commands", "stream_commands", "demo", "main"}


def _part(module: str) -> str | None:
  parts = module.split(".")
  if parts[0] == "input_pipeline":
    return "input_pipeline"
  if parts[0] != "nafp_jax" or len(parts) == 1:
    return None
  return parts[1]


def _imports(path: Path):
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      for alias in node.names:  # `from nafp_jax import audio` names a part too
        yield f"{node.module}.{alias.name}"
    elif isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)


def test_every_part_imports_only_the_parts_below_it():
  files = sorted((ROOT / "nafp_jax").rglob("*.py")) + sorted((ROOT / "input_pipeline").rglob("*.py"))
  seen, violations = set(), []
  for path in files:
    module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    source = _part(module)
    if source in (None, "__init__", "assets") or source in FRONT_ENDS:
      continue
    assert source in ALLOWED, f"{path.relative_to(ROOT)}: part {source!r} has no layering rule"
    seen.add(source)
    for name in _imports(path):
      target = _part(name)
      if target in (None, source, "__init__") or target not in ALLOWED | dict.fromkeys(FRONT_ENDS):
        continue
      if target not in ALLOWED[source]:
        violations.append(f"{path.relative_to(ROOT)} imports {name} ({source} -> {target})")
  assert not violations, "\n".join(violations)
  assert seen == set(ALLOWED), set(ALLOWED) - seen


def test_the_rule_has_no_cycles():
  order, visiting = [], set()

  def visit(part):
    assert part not in visiting, f"cycle through {part}"
    if part in order:
      return
    visiting.add(part)
    for below in ALLOWED[part]:
      visit(below)
    visiting.discard(part)
    order.append(part)

  for part in ALLOWED:
    visit(part)
