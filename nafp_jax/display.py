"""Text shown to people: names made safe for one-line output, times as m:ss.ss."""

from __future__ import annotations


def printable(name: str) -> str:
  """A track name for a one-line table: control characters (newlines, escapes) escaped."""
  return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in name)


def clock(seconds: float) -> str:
  """Seconds as minutes:seconds with hundredths (`3:07.25`)."""
  minutes, sec = divmod(seconds, 60)
  return f"{int(minutes)}:{sec:05.2f}"
