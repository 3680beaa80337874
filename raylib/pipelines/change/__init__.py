"""``landcover change``: what changed between maps of one place on the ground grid.

``dates``: each date's map opened and checked; ``partition``: one range of tile ids read
from every date, joined, decided (``eval.change``), written and summed; ``run``: the
driver; ``picture``: the change map's picture.

The dates (``--before``/``--after``, or ``--dates`` in order) are maps or composites made on
the ground grid, so one place has one ``tile_id`` on every date. The change map has one row
per tile: ``from`` (the class at the first date that observes it), ``to`` (the class the
decisions hold at the last date), ``changed``, ``p_change`` (first and last observation),
``confidence_before``/``confidence_after``, ``changed_at``, ``pending``, ``labels`` and, as a
map of transitions, ``label`` = ``from->to`` (``A->A``: stable), so ``sample`` and
``assess`` read it as a map whose classes are the transitions. A tile the first or the last
date does not observe is an error row with that date's reason. Beside it:
``_transitions.csv``, ``_quicklook/change.png``, ``_summary.json``, ``_SUCCESS``.
"""
