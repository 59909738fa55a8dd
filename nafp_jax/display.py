"""Text shown to people: names made safe for one-line output."""

from __future__ import annotations


def printable(name: str) -> str:
  """A track name for a one-line table: control characters (newlines, escapes) escaped."""
  return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in name)
