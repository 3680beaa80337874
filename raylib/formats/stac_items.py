"""STAC 1.1 Items and a Collection for a map's rasters (``landcover export``), with the
classification, raster, projection, file and processing extensions, validated offline
against the core schemas PySTAC ships and the extensions' schemas ``scripts/stac_schemas.py``
installs."""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path

from raylib.io.names import STAC_ASSET, safe_name

STAC_VERSION = "1.1.0"
EXTENSIONS = {
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.0.0/schema.json",
}
COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PARQUET_TYPE = "application/vnd.apache.parquet"


def schema_folder() -> Path:
    """Where ``scripts/stac_schemas.py`` installs the extensions' schemas."""
    return Path(sys.prefix) / "share" / "landcover-ray" / "stac-schemas"


def class_name(name: str) -> str:
    """A class's name as the classification extension allows it (``[0-9A-Za-z-_]``): a
    transition ``a->b`` is ``a_to_b``."""
    return safe_name(name.replace("->", "_to_"), sep="_", allowed=STAC_ASSET, default="class")


def footprint(bounds: tuple[float, float, float, float], crs: str, n: int = 21) -> dict:
    """A raster's bounds in its CRS as a lon/lat polygon (each edge densified)."""
    from rasterio.warp import transform

    x0, y0, x1, y1 = bounds
    t = [i / (n - 1) for i in range(n)]
    xs = [x0 + (x1 - x0) * v for v in t] + [x1] * n + [x1 - (x1 - x0) * v for v in t] + [x0] * n
    ys = [y0] * n + [y0 + (y1 - y0) * v for v in t] + [y1] * n + [y1 - (y1 - y0) * v for v in t]
    lon, lat = transform(crs, "EPSG:4326", xs, ys)
    ring = [[round(a, 7), round(b, 7)] for a, b in zip(lon, lat)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


def raster_item(item_id: str, href: str, *, bounds, crs: str, shape: tuple[int, int], transform: list[float],
                when: dict, title: str, bands: list[dict], size: int, sha256: str, processing: dict,
                classes: list[dict] | None = None, links: list[dict] | None = None) -> dict:
    """The Item of one COG (asset ``data`` at ``href``, relative to the item)."""
    geom = footprint(bounds, crs)
    ring = geom["coordinates"][0]
    asset = {"href": href, "type": COG_TYPE, "title": title, "roles": ["data"], "raster:bands": bands,
             "file:size": size, "file:checksum": "1220" + sha256}
    exts = ["raster", "projection", "file", "processing"]
    if classes is not None:
        asset["classification:classes"] = classes
        exts.insert(0, "classification")
    return {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [EXTENSIONS[e] for e in exts],
        "id": item_id, "geometry": geom,
        "bbox": [min(p[0] for p in ring), min(p[1] for p in ring), max(p[0] for p in ring), max(p[1] for p in ring)],
        "properties": {**when, "title": title, "proj:code": crs, "proj:shape": list(shape),
                       "proj:transform": list(transform), **processing},
        "assets": {"data": asset},
        "links": list(links or []),
    }


def class_entries(names: list[str], colours: list, first_value: int) -> list[dict]:
    """``classification:classes`` of a map's classes (values from ``first_value``), each with
    its quick-look colour; a transition ``a->b`` described as such."""
    out = []
    for i, (c, rgb) in enumerate(zip(names, colours)):
        a, _, b = c.partition("->")
        what = f"from {a} to {b}" if b and a != b else (f"stable {a}" if b else f"land cover: {c}")
        out.append({"value": first_value + i, "name": class_name(c), "title": c, "description": what,
                    "color_hint": "%02X%02X%02X" % tuple(rgb)})
    return out


def box_polygon(bbox: list[float]) -> dict:
    """A lon/lat box as a GeoJSON polygon."""
    w, s_, e, n = bbox
    return {"type": "Polygon", "coordinates": [[[w, s_], [e, s_], [e, n], [w, n], [w, s_]]]}


def part_item(item_id: str, href: str, *, bbox: list[float], when: dict, title: str, rows: int, size: int,
              sha256: str, processing: dict, classes: list[dict] | None = None,
              links: list[dict] | None = None) -> dict:
    """The Item of one GeoParquet part of a map, store, composite or change map (asset
    ``data`` at ``href``, relative to the item)."""
    asset = {"href": href, "type": PARQUET_TYPE, "title": title, "roles": ["data"], "file:size": size,
             "file:checksum": "1220" + sha256}
    exts = ["file", "processing"]
    if classes is not None:
        asset["classification:classes"] = classes
        exts.insert(0, "classification")
    return {
        "type": "Feature", "stac_version": STAC_VERSION, "stac_extensions": [EXTENSIONS[e] for e in exts],
        "id": item_id, "geometry": box_polygon(bbox), "bbox": list(bbox),
        "properties": {**when, "title": title, "landcover:rows": rows, **processing},
        "assets": {"data": asset}, "links": list(links or []),
    }


def collection(collection_id: str, description: str, items: list[dict], item_hrefs: list[str],
               extra: dict | None = None) -> dict:
    """A Collection over ``items`` (their extent), linking each at its href."""
    boxes = [i["bbox"] for i in items]
    starts = [i["properties"].get("start_datetime") or i["properties"].get("datetime") for i in items]
    ends = [i["properties"].get("end_datetime") or i["properties"].get("datetime") for i in items]
    return {
        "type": "Collection", "stac_version": STAC_VERSION, "stac_extensions": [], "id": collection_id,
        "description": description, "license": "other",
        "extent": {"spatial": {"bbox": [[min(b[0] for b in boxes), min(b[1] for b in boxes),
                                         max(b[2] for b in boxes), max(b[3] for b in boxes)]]},
                   "temporal": {"interval": [[min(s for s in starts if s), max(e for e in ends if e)]]}},
        "links": [{"rel": "root", "href": "./collection.json", "type": "application/json"},
                  {"rel": "self", "href": "./collection.json", "type": "application/json"}]
        + [{"rel": "item", "href": h, "type": "application/geo+json"} for h in item_hrefs],
        **(extra or {}),
    }


@functools.lru_cache(maxsize=1)
def _validator():
    """One validator per process: each schema read, checked and compiled once (PySTAC's own
    checks and compiles the schema on every object, 40 ms an Item: most of a map's STAC)."""
    import jsonschema
    from pystac.errors import STACValidationError
    from pystac.validation.stac_validator import GetSchemaError, JsonSchemaSTACValidator

    class LocalSchemas(JsonSchemaSTACValidator):
        """Core schemas from PySTAC, extensions' from the installed folder; nothing fetched."""

        compiled: dict = {}

        def _get_schema(self, schema_uri: str) -> dict:
            if schema_uri not in self.schema_cache:
                local = schema_folder() / re.sub(r"^https?://", "", schema_uri.split("#")[0])
                if not local.exists():
                    raise GetSchemaError(schema_uri, FileNotFoundError(
                        f"{local} (run scripts/stac_schemas.py, as scripts/install.sh does)"))
                self.schema_cache[schema_uri] = json.loads(local.read_text())
            return self.schema_cache[schema_uri]

        def _validate_from_uri(self, stac_dict, stac_object_type, schema_uri, href=None) -> None:
            check = self.compiled.get(schema_uri)
            if check is None:
                schema = self._get_schema(schema_uri)
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                check = self.compiled[schema_uri] = cls(schema, registry=self.registry)
            errors = list(check.iter_errors(stac_dict))
            if errors:  # (PySTAC's message)
                best = jsonschema.exceptions.best_match(errors)
                raise STACValidationError(f"Validation failed for {stac_object_type} with ID {stac_dict.get('id')} "
                                          f"against schema at {schema_uri}" + (f"\n{best}" if best else ""),
                                          source=errors) from best

    return LocalSchemas()


def validate(obj: dict) -> list[str]:
    """The STAC object's problems against the core and extension schemas (none: valid)."""
    import pystac
    from pystac.errors import STACValidationError
    from pystac.validation.stac_validator import GetSchemaError

    kind = pystac.STACObjectType.ITEM if obj.get("type") == "Feature" else pystac.STACObjectType.COLLECTION
    try:
        pystac.validation.validate_dict(obj, kind, validator=_validator())
    except STACValidationError as exc:
        return [str(exc).splitlines()[0][:500]]
    except GetSchemaError as exc:
        return [f"cannot validate: {exc}"]
    return []
