"""Hit rates reported by the attention-embeddings paper (ISMIR 2022), for side-by-side tables.

Figures as docs/design.md §6 quotes them (FMA-medium catalogue, ~7 M fingerprints), in %.  Keys:
(level, condition, query length in s or None where the paper's table does not vary it) ->
{reported method: {SNR dB or T60 s: hit rate}}.  Reverb at the audio level is "about 99 %" at
every T60 in the paper: recorded as 99.0.
"""

from __future__ import annotations

PAPER = "paper: attention"
PAPER_NAFP = "paper: NAFP"
PAPER_AUDFPRINT = "paper: audfprint"

_SNRS = (0.0, 5.0, 10.0, 15.0)
_T60S = (0.2, 0.4, 0.5, 0.7, 0.8)


def _by(columns, values) -> dict[float, float]:
  return dict(zip(columns, values))


REPORTED: dict[tuple[str, str, float | None], dict[str, dict[float, float]]] = {
    ("segment", "noise+reverb", 0.96): {PAPER: _by(_SNRS, (60.3, 76.6, 81.3, 82.8)),
                                        PAPER_NAFP: _by(_SNRS, (27.3, 58.7, 70.7, 73.9))},
    ("segment", "noise+reverb", 2.0): {PAPER: _by(_SNRS, (66.4, 83.5, 86.9, 88.0))},
    ("segment", "noise+reverb", 3.0): {PAPER: _by(_SNRS, (67.9, 85.1, 88.2, 89.3))},
    ("segment", "noise+reverb", 5.0): {PAPER: _by(_SNRS, (69.5, 87.1, 90.5, 91.9))},
    ("audio", "noise", None): {PAPER: _by(_SNRS, (95.0, 98.7, 98.9, 99.2)),
                               PAPER_AUDFPRINT: _by(_SNRS, (72.1, 82.7, 89.4, 91.2))},
    ("audio", "noise+reverb", None): {PAPER: _by(_SNRS, (84.3, 96.8, 98.5, 98.9)),
                                      PAPER_AUDFPRINT: _by(_SNRS, (64.8, 79.4, 87.2, 92.3))},
    ("audio", "reverb", None): {PAPER: _by(_T60S, (99.0,) * 5)},
}
