"""Land change between class maps of one place: per tile, the probability that two dates
differ, and which changes count (thresholds on both dates, persistence to the next date),
over any number of dates. Plain numpy on arrays of tiles x dates, no I/O.

``labels`` (tiles x dates): each date's class (group) index, -1 where the date has no
observation of the tile (an error row, or not mapped). ``probs``: per date, tiles x classes
(NaN rows where -1). A change from the *accepted* class (the class the decisions so far hold
for the tile) to a date's class counts when

* the probability that the date differs from the date that set the accepted class
  (``p_change``: 1 - sum_k p1(k) p2(k), the two dates' errors taken as independent) is at
  least ``min_p_change``, and both dates' top probabilities are at least ``min_confidence``;
* with ``persist``, the new class holds on the next date that observes the tile (a change
  into the last observation has no such date: it is *pending*, not counted).

So a class that goes A -> B -> A (flicker) is no change with persistence, and a change first
seen with low confidence counts once a sure date shows it (its probabilities are compared
with those of the date that set the accepted class, not only the date before).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def p_change(p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """The probability that two dates' classes differ, per tile: 1 - sum_k p1(k) p2(k)
    (NaN where either date has no probabilities)."""
    return np.clip(1.0 - np.einsum("nk,nk->n", p1.astype(np.float64), p2.astype(np.float64)), 0.0, 1.0)


@dataclass
class Decisions:
    accepted: np.ndarray  # tiles x dates: the class held at each date (-1: not observed yet)
    changed: np.ndarray  # tiles x periods: the accepted class changed in the period (date i -> i + 1)
    candidate: np.ndarray  # tiles x periods: the mapped class differs from the accepted one (a change to decide)
    p_change: np.ndarray  # tiles x periods: vs the date that set the accepted class (NaN: not both observed)
    pending: np.ndarray  # tiles: a change into the last observation, with no later date to confirm it
    first: np.ndarray  # tiles: the first date that observes the tile (-1: none)
    last: np.ndarray  # tiles: the last date that observes the tile (-1: none)


def decide(labels: np.ndarray, probs: list[np.ndarray], confidence: np.ndarray, min_p_change: float,
           min_confidence: float = 0.0, persist: bool = False) -> Decisions:
    """Which changes count, date by date (module docstring)."""
    n, d = labels.shape
    seen = labels >= 0
    acc = np.full((n, d), -1, np.int64)
    anchor = np.full(n, -1, np.int64)  # the date that set the accepted class
    changed = np.zeros((n, d - 1), bool)
    candidate = np.zeros((n, d - 1), bool)
    pch = np.full((n, d - 1), np.nan)
    pending = np.zeros(n, bool)
    # the next date after each date that observes the tile (-1: none), for persistence
    nxt = np.full((n, d), -1, np.int64)
    for j in range(d - 2, -1, -1):
        nxt[:, j] = np.where(seen[:, j + 1], j + 1, nxt[:, j + 1])
    start = seen[:, 0]
    acc[start, 0] = labels[start, 0]
    anchor[start] = 0
    rows = np.arange(n)
    stacked = np.stack(probs, axis=1) if d else np.zeros((n, 0, 0))  # tiles x dates x classes
    for i in range(d - 1):
        prev, new = acc[:, i], labels[:, i + 1]
        acc[:, i + 1] = prev
        fresh = (prev < 0) & (new >= 0)  # the tile's first observation: its class, no change
        acc[fresh, i + 1] = new[fresh]
        anchor[fresh] = i + 1
        cand = (prev >= 0) & (new >= 0) & (new != prev)
        a = np.where(anchor >= 0, anchor, 0)
        both = (prev >= 0) & (new >= 0)
        pch[both, i] = p_change(stacked[rows[both], a[both]], stacked[both, i + 1])
        ok = cand & (pch[:, i] >= min_p_change) & (confidence[rows, a] >= min_confidence) \
            & (confidence[:, i + 1] >= min_confidence)
        if persist:
            later = nxt[:, i + 1]
            held = later >= 0
            holds = np.zeros(n, bool)
            holds[held] = labels[rows[held], later[held]] == new[held]
            pending |= ok & ~held
            ok &= holds
        candidate[:, i] = cand
        changed[:, i] = ok
        acc[ok, i + 1] = new[ok]
        anchor[ok | ((new >= 0) & (new == prev))] = i + 1  # a date that shows the accepted class sets it anew
    first = np.where(seen.any(axis=1), np.argmax(seen, axis=1), -1)
    last = np.where(seen.any(axis=1), d - 1 - np.argmax(seen[:, ::-1], axis=1), -1)
    return Decisions(acc, changed, candidate, pch, pending, first, last)


def flicker(series: np.ndarray) -> tuple[int, int]:
    """Tiles whose class goes A -> B -> A over three consecutive observed dates, and the tiles
    with three consecutive observed dates at all (the share's denominator)."""
    n, d = series.shape
    if d < 3:
        return 0, 0
    a, b, c = series[:, :-2], series[:, 1:-1], series[:, 2:]
    seen = (a >= 0) & (b >= 0) & (c >= 0)
    flick = seen & (a != b) & (c == a)
    return int(flick.any(axis=1).sum()), int(seen.any(axis=1).sum())
