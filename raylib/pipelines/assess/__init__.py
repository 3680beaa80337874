"""``landcover assess`` and ``landcover sample``: map accuracy and area estimates against
reference land cover (Olofsson et al. 2014), and stratified sample designs drawn from a map.

Four ways in, one output (``assessment.json``, ``report.md``, ``confusion.png`` and, for
a map, ``comparison.png``, then ``_SUCCESS``):

* a map and a reference class raster (any CRS and grid): every tile with a pure enough
  reference is assessed, a census of the map's tiles; map classes are the strata, and their
  mapped areas (hectares, from the tiles' footprints less their fill) weight the estimates;
* a map and reference points/polygons: each feature against the tile(s) it falls in;
* a labelled sample table (``map``, ``reference`` columns) and the mapped area of each class
  (an areas table, or the map the sample was drawn from: ``samples``);
* a change map and reference rasters of its first and last dates, tile by tile
  (``change_mode``).

``map_mode`` and ``samples`` hold the first three, ``report`` writes ``report.md``, ``run``
picks the way in.

Every input is checked before anything is written; a run that fails leaves no
``_SUCCESS`` and no ``assessment.json``.
"""

from raylib.pipelines.assess.map_mode import _comparison_png
from raylib.pipelines.assess.report import assessment_markdown
from raylib.pipelines.assess.run import run_assess
from raylib.pipelines.assess.samples import mapped_areas, run_sample

__all__ = ["_comparison_png", "assessment_markdown", "mapped_areas", "run_assess", "run_sample"]
