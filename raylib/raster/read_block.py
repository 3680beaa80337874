"""The columns of a map job's read block, named once.

A read task (``pipelines.map.source.read_units``) returns one block of numpy columns per
read unit; Ray Data carries it to the model actors, which drop the pixels and add their
outputs, and on to the driver (``pipelines.map.ingest``), which turns it into map and store
rows. Every module that reads or writes a block takes the names from here:

``READ``   what ``raster.reading.read_tiles`` gives per tile (``empty_rows``): the index in
           the scene, the pixels with their per-band ``gain``/``offset`` (the model's input is
           ``clip(pixels * gain + offset, 0, 1)``), the fill share, the outcome, the read's
           retries, the spectral statistics (``STATS``) and the quality shares
           (``CLOUD_COLUMNS``); ``PIXEL_OUT`` too when the model has a pixel classifier.
``PLACE``  where the tile lies (``pipelines.map.row_codec.encode_tiles``): its tile-table
           columns flattened (``uri`` for the scene, ``bbox_*`` for the box) and the scene's
           item columns.
``SPAN``   0 on a tile's row; on a failure row (a scene that cannot be mapped), how many
           tiles from ``idx`` it stands for.
``UNIT``   the read unit's scene number and, on the unit's first row only, the scene's record
           (JSON; ``""`` on the others).
``MODEL``  what a model actor adds (``pipelines.map.predictor``): class probabilities, the
           out-of-distribution score, and with a store the embedding.

Names only: no imports, so every layer can use it.
"""

from __future__ import annotations

PIXELS = ("pixels", "gain", "offset")  # the model's input; the model stage drops them
STATS = ("band_mean", "band_std", "n_stats", "ndvi", "ndwi", "stats_reflectance")
CLOUD_COLUMNS = ("cloud_fraction", "shadow_fraction", "snow_fraction")
READ = ("idx", *PIXELS, "fill_fraction", "status", "error", "retries", *STATS, *CLOUD_COLUMNS)
PIXEL_OUT = "pixel_out"

BBOX = ("xmin", "ymin", "xmax", "ymax")
ITEM = ("datetime", "item_id", "collection")
PLACE = ("tile_id", "uri", "row_off", "col_off", "width", "height", "grid_row", "grid_col", "edge", "scene_crs",
         "geometry", *(f"bbox_{k}" for k in BBOX), *ITEM)
SPAN = "span"
UNIT = ("scene_idx", "meta")

PROBS, OOD, EMBEDDING = "probs", "ood", "embedding"
MODEL = (PROBS, OOD, EMBEDDING)

# what a read task returns, and what the model stage passes on (without a pixel classifier)
FROM_READ = (*READ, *PLACE, SPAN, *UNIT)
FROM_MODEL = (*(c for c in FROM_READ if c not in PIXELS), *MODEL)
# per-tile statistics the map and the store keep (with the model's ``ood``)
ROW_STATS = (*STATS, OOD, *CLOUD_COLUMNS)
