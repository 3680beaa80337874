"""STAC in: the items of a STAC API (pystac-client), a static catalog, collection, item or
item collection (pystac; local or ``s3://``), or a stac-geoparquet file (pyarrow +
stac-geoparquet), filtered by collections, bounding box, datetime and cloud cover.

Items come back as plain STAC JSON dicts, sorted by (datetime, collection, id), so a run
sees them in the same order whatever the source. An API filters on the server (its
``bbox``, ``datetime``, ``collections``; ``query`` where the API supports it); static
catalogs and stac-geoparquet files are filtered here with the same rules, and cloud cover
(``eo:cloud_cover``) is always checked here too, since not every API implements the query
extension."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from raylib.errors import ConfigError, InputError, StorageError
from raylib.io import storage

GEOPARQUET_SUFFIXES = (".parquet", ".geoparquet")


@dataclass(frozen=True)
class StacQuery:
    """What to search: ``source`` (API URL, catalog/collection/item JSON, stac-geoparquet
    file) and its filters."""

    source: str
    collections: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None  # W, S, E, N in degrees
    datetime: str | None = None  # "2020-05-01/2020-09-30", "2020", "2020-05-01/..", ...
    max_cloud: float | None = None  # eo:cloud_cover in percent
    query: dict = field(default_factory=dict)  # API query extension, e.g. {"platform": {"eq": "landsat-8"}}
    max_items: int | None = None
    intersects: dict | None = None  # a GeoJSON geometry (lon/lat) an item's footprint must meet (an AOI)


def parse_interval(text: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``datetime`` as a closed interval in UTC: one instant or date (a date, month or year
    spans all of it), or ``start/end`` with ``..`` (or nothing) for an open end."""
    if text is None or str(text).strip() == "":
        return None, None
    text = str(text).strip()
    parts = text.split("/")
    if len(parts) > 2:
        raise ConfigError(f"datetime {text!r} has more than one '/'.", _DATETIME_FIX)
    if len(parts) == 1:
        lo, hi = _instant(parts[0], text, end=False), _instant(parts[0], text, end=True)
    else:
        lo, hi = _instant(parts[0], text, end=False), _instant(parts[1], text, end=True)
    if lo and hi and lo > hi:
        raise ConfigError(f"datetime {text!r} ends before it starts.", _DATETIME_FIX)
    if lo is None and hi is None and len(parts) == 2:
        raise ConfigError(f"datetime {text!r} is open at both ends.", _DATETIME_FIX)
    return lo, hi


_DATETIME_FIX = "give a date or an interval like 2020-05-01/2020-09-30 (RFC 3339; '..' for an open end)."


def _instant(s: str, whole: str, end: bool) -> dt.datetime | None:
    s = s.strip()
    if s in ("", ".."):
        return None
    try:
        if len(s) == 4 and s.isdigit():  # a year
            d = dt.datetime(int(s), 1, 1, tzinfo=dt.timezone.utc)
            return d.replace(year=d.year + 1) - dt.timedelta(microseconds=1) if end else d
        if len(s) == 7 and s[4] == "-":  # a month
            y, m = int(s[:4]), int(s[5:])
            d = dt.datetime(y, m, 1, tzinfo=dt.timezone.utc)
            nxt = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=dt.timezone.utc)
            return nxt - dt.timedelta(microseconds=1) if end else d
        if len(s) == 10:  # a date
            d = dt.datetime.fromisoformat(s).replace(tzinfo=dt.timezone.utc)
            return d + dt.timedelta(days=1, microseconds=-1) if end else d
        d = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise ConfigError(f"datetime {whole!r}: {s!r} is not a date or time.", _DATETIME_FIX) from None


def parse_bbox(value) -> tuple[float, float, float, float] | None:
    """``W,S,E,N`` in degrees (a string or four numbers), checked."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        w, s, e, n = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise ConfigError(f"bbox {value!r} is not four numbers.", "give W,S,E,N in degrees, e.g. -78.9,35.7,-78.6,35.9.")
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s < n <= 90) or w >= e:
        raise ConfigError(f"bbox {value!r} is not W,S,E,N in degrees with W < E and S < N.",
                          "give W,S,E,N in degrees, e.g. -78.9,35.7,-78.6,35.9 (an area across the antimeridian "
                          "as two runs).")
    return w, s, e, n


def item_datetime(item: dict) -> tuple[dt.datetime | None, dt.datetime | None]:
    """An item's time span: ``datetime``, or ``start_datetime``/``end_datetime``."""
    p = item.get("properties") or {}

    def at(k):
        v = p.get(k)
        if not v:
            return None
        d = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
        return d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)

    single = at("datetime")
    return (single, single) if single else (at("start_datetime"), at("end_datetime"))


def matches(item: dict, q: StacQuery, interval=None) -> bool:
    """The client-side filter: collections, bbox, AOI, datetime and cloud cover."""
    if q.collections and item.get("collection") not in q.collections:
        return False
    if q.bbox is not None:
        b = item.get("bbox")
        if b is not None:
            w, s, e, n = (b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
            if e < q.bbox[0] or w > q.bbox[2] or n < q.bbox[1] or s > q.bbox[3]:
                return False
    if q.intersects is not None and not _meets(item, q.intersects):
        return False
    lo, hi = interval if interval is not None else parse_interval(q.datetime)
    if lo or hi:
        a, b = item_datetime(item)
        if a is None:
            return False
        if (hi and a > hi) or (lo and (b or a) < lo):
            return False
    if q.max_cloud is not None:
        cc = (item.get("properties") or {}).get("eo:cloud_cover")
        if cc is not None and float(cc) > q.max_cloud:
            return False
    return True


def _meets(item: dict, geometry: dict) -> bool:
    """The item's footprint (its geometry, else its bbox) meets ``geometry``."""
    import shapely.geometry

    try:
        if item.get("geometry"):
            foot = shapely.geometry.shape(item["geometry"])
        elif item.get("bbox"):
            b = item["bbox"]
            foot = shapely.geometry.box(*((b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])))
        else:
            return True  # nothing to test: planning keeps only its tiles that meet the AOI
    except Exception:
        return True
    return bool(foot.intersects(shapely.geometry.shape(geometry)))


def search(q: StacQuery) -> list[dict]:
    """The items ``q`` selects, as STAC JSON dicts sorted by (datetime, collection, id)."""
    interval = parse_interval(q.datetime)
    src = q.source
    lower = src.lower().split("?")[0]
    if lower.endswith(GEOPARQUET_SUFFIXES):
        items = _geoparquet_items(src)
    elif lower.startswith(("http://", "https://")) and not lower.endswith(".json"):
        items = _api_items(q)
    else:
        items = _static_items(src)
    out = [it for it in items if matches(it, q, interval)]
    out.sort(key=lambda it: (str((it.get("properties") or {}).get("datetime")
                                 or (it.get("properties") or {}).get("start_datetime") or ""),
                             str(it.get("collection") or ""), str(it.get("id"))))
    return out if q.max_items is None else out[: q.max_items]  # the first by date, whatever the source's order


# --------------------------------------------------------------------------- sources


def _api_items(q: StacQuery) -> list[dict]:
    """A STAC API's item search (pystac-client), paged."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(q.source)
    except APIError as exc:
        if getattr(exc, "status_code", None) is not None:
            raise StorageError(f"The STAC API at {q.source} answered with an error ({_first_line(exc)}).",
                               "check the URL: it should be the API's landing page (the one that lists /search).") \
                from None
        raise StorageError(f"The STAC API at {q.source} cannot be reached ({_first_line(exc)}).",
                           "check the URL and that the server is up; a static catalog's JSON or a stac-geoparquet "
                           "file works too.") from None
    except Exception as exc:  # DNS, TLS, not JSON
        raise StorageError(f"The STAC API at {q.source} cannot be reached ({_first_line(exc)}).",
                           "check the URL and the network; a static catalog's JSON or a stac-geoparquet file "
                           "works too.") from None
    if not client.conforms_to("ITEM_SEARCH"):
        raise InputError(f"{q.source} is a STAC catalog without item search.",
                         "give its catalog.json as --stac (read as a static catalog), or the API's root URL.")
    kwargs: dict = {"max_items": q.max_items}
    if q.collections:
        kwargs["collections"] = list(q.collections)
    if q.bbox:
        kwargs["bbox"] = list(q.bbox)
    if q.datetime:
        kwargs["datetime"] = q.datetime
    if q.query:
        if not client.conforms_to("QUERY"):
            raise ConfigError(f"query {q.query!r}: the STAC API at {q.source} does not implement the query extension.",
                              "leave query out (max_cloud is checked on every item here), or use an API that "
                              "implements it.")
        kwargs["query"] = q.query
    try:
        return list(client.search(**kwargs).items_as_dicts())
    except APIError as exc:
        raise StorageError(f"The STAC API at {q.source} refused the search ({_first_line(exc)}).",
                           "check collections, bbox and datetime.") from None
    except Exception as exc:
        raise StorageError(f"Searching the STAC API at {q.source} failed ({_first_line(exc)}).",
                           "check the URL and the network.") from None


def _static_items(src: str) -> list[dict]:
    """Every item under a static catalog or collection (links followed, relative hrefs made
    absolute), or the item / item collection ``src`` is."""
    doc = _read_json(src)
    kind = doc.get("type")
    if kind == "Feature":
        return [_absolute(doc, src)]
    if kind == "FeatureCollection":
        return [_absolute(f, src) for f in doc.get("features", [])]
    if kind not in ("Catalog", "Collection"):
        raise InputError(f"{src} is not a STAC catalog, collection, item or item collection (type {kind!r}).",
                         "give a catalog.json / collection.json, an item, an API URL or a stac-geoparquet file.")
    items: list[dict] = []
    seen: set[str] = set()
    stack = [(src, doc)]
    while stack:
        href, node = stack.pop()
        if href in seen:
            continue
        seen.add(href)
        for link in node.get("links", []):
            rel, target = link.get("rel"), link.get("href")
            if not target or rel not in ("item", "child"):
                continue
            target = _resolve(href, target)
            child = _read_json(target)
            if rel == "item":
                if target not in seen:
                    seen.add(target)
                    child.setdefault("collection", node.get("id") if node.get("type") == "Collection" else None)
                    items.append(_absolute(child, target))
            else:
                stack.append((target, child))
    return items


def _geoparquet_items(src: str) -> list[dict]:
    """The items of a stac-geoparquet file (local or ``s3://``)."""
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    fs, path = storage.arrow_filesystem(src)
    try:
        table = pq.read_table(path, filesystem=fs)
    except FileNotFoundError:
        raise InputError(f"{src} does not exist.", "check the path of the stac-geoparquet file.") from None
    except Exception as exc:
        raise InputError(f"{src} is not a readable stac-geoparquet file ({_first_line(exc)}).",
                         "give a file written by stac-geoparquet or rustac.") from None
    return [_absolute(dict(it), src) for it in stac_table_to_items(table)]


def _read_json(href: str) -> dict:
    try:
        if href.lower().startswith(("http://", "https://")):
            import urllib.request

            with urllib.request.urlopen(href, timeout=30) as r:  # noqa: S310 (a user's STAC URL)
                data = r.read()
        else:
            data = storage.read_bytes(href)
        return json.loads(data)
    except (InputError, StorageError):
        raise
    except json.JSONDecodeError as exc:
        raise InputError(f"{href} is not JSON ({exc.msg} at line {exc.lineno}).",
                         "give a STAC catalog, collection or item JSON file.") from None
    except Exception as exc:
        raise StorageError(f"{href} cannot be read ({_first_line(exc)}).", "check the path or URL.") from None


def _resolve(base: str, href: str) -> str:
    """``href`` relative to the document at ``base`` (local path, s3:// or http URL)."""
    if "://" in href or href.startswith("/"):
        return href
    import posixpath

    if "://" in base:
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), href))}"
    import os

    return os.path.normpath(os.path.join(os.path.dirname(base), href))


def _absolute(item: dict, href: str) -> dict:
    """The item with each asset's href absolute (relative hrefs are relative to the item)."""
    item = dict(item)
    assets = {}
    for k, a in (item.get("assets") or {}).items():
        a = dict(a)
        if a.get("href"):
            a["href"] = _resolve(href, a["href"])
        assets[k] = a
    item["assets"] = assets
    return item


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
