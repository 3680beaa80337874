"""The dates of a change: each a finished map (or composite) on the ground grid, opened and
checked on the driver without reading its tiles (metadata, and one streamed column for its
acquisition day), and the classes the change is told in."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from raylib.errors import ConfigError, InputError
from raylib.eval import reference
from raylib.formats import mapfile, out_folder
from raylib.io import storage
from raylib.pipelines.common.map_input import MapSource, finished_folder, open_map_input

# the columns a change reads of each date
READ = ["tile_id", "scene_crs", "geometry", "bbox", "label", "confidence", "probs", "status", "reason", "error",
        "fill_fraction"]
DAY = 86400


@dataclass
class DateSource:
    """One date: its map (not read), identity and acquisition day."""

    source: MapSource
    name: str  # the date (the rows' median acquisition day), else the folder's name
    when: float | None  # that day, epoch seconds
    classes: list[str]
    model_id: str
    grid: dict

    @property
    def uri(self) -> str:
        return self.source.uri

    @property
    def version(self) -> str:
        """Which run of the map this is (its ``_SUCCESS`` marker's fingerprint): a map made
        again is another input, and a killed change does not resume over it."""
        return storage.fingerprint(out_folder.success_uri(finished_folder(self.uri)))


def _median_day(src: MapSource) -> float | None:
    """The median acquisition day of the map's rows, streamed (flat in the number of rows)."""
    days: dict[int, int] = {}
    for batch in src.dataset().to_batches(columns=["datetime"]):
        v = batch.column(0).cast(pa.int64()).drop_null().to_numpy()
        for d, c in zip(*np.unique(v // DAY, return_counts=True)):
            days[int(d)] = days.get(int(d), 0) + int(c)
    if not days:
        return None
    order = sorted(days)
    counts = np.cumsum([days[d] for d in order])
    return float(order[int(np.searchsorted(counts, counts[-1] / 2))] * DAY)


def open_date(uri: str) -> DateSource:
    """A map (or composite) as one date; refused in one line when it is not a finished
    ground-grid map."""
    src = open_map_input(uri)
    if src.kind == "change":
        raise InputError(f"{uri} is a change map, not a map of one date.",
                         "give the maps (or composites) of the dates themselves.")
    grid = src.meta.get("grid") or {}
    if not grid.get("ground"):
        raise InputError(f"{uri} was mapped on its scenes' own grids, whose tiles do not line up across dates.",
                         "map every date with --grid ground (the same --tile-size and --gsd), then compare them.")
    when = _median_day(src)
    base = finished_folder(uri).rstrip("/")
    name = time.strftime("%Y-%m-%d", time.gmtime(when)) if when is not None else (base.rsplit("/", 1)[-1] or base)
    return DateSource(src, name, when, list(src.meta["classes"]), str(src.meta.get("model_id")), grid)


def check_dates(dates: list[DateSource]) -> None:
    """One ground grid, and the dates in order."""
    first = dates[0]
    for d in dates[1:]:
        if d.grid != first.grid:
            raise ConfigError(f"{first.uri} (grid {first.grid}) and {d.uri} (grid {d.grid}) are on different "
                              "ground grids: their tiles are other places.",
                              "map every date with the same --tile-size, --stride and --gsd.")
    for a, b in zip(dates, dates[1:]):
        if a.when is not None and b.when is not None and b.when <= a.when:
            raise ConfigError(f"The dates are out of order: {a.uri} ({a.name}) comes before {b.uri} ({b.name}) "
                              "but was acquired on or after it.",
                              "give --before the earlier map and --after the later one (--dates in date order).")


def several_observations(d: DateSource, example: str) -> InputError:
    """The error for a date whose map holds a ground tile more than once."""
    comp = storage.join(d.uri.rstrip("/"), mapfile.COMPOSITE)
    has = storage.is_prefix(comp) or storage.exists(comp)
    return InputError(f"{d.uri} holds several observations of some ground tiles (e.g. {example}: overlapping "
                      "scenes or dates): a change compares one class per tile and date.",
                      f"pass its composite, {comp}" if has else
                      "map it again with --composite best (or mean) and pass <map>/_composite.")


def no_shared_tile(a: DateSource, b: DateSource) -> InputError:
    return InputError(f"{a.uri} and {b.uri} share no ground tile: they map other places (or other CRS zones).",
                      "give maps of the same place, made on the same ground grid.")


def groups(dates: list[DateSource], crosswalk: str | None) -> tuple[list[str], list[np.ndarray]]:
    """The classes the change is told in, and per date a (its classes x groups) 0/1 matrix
    that sums its probabilities into them: its own classes when every date has the same
    model, else a crosswalk's groups."""
    first = dates[0]
    if crosswalk is None:
        for d in dates[1:]:
            if (d.classes, d.model_id) != (first.classes, first.model_id):
                what = "classes" if d.classes != first.classes else "model"
                raise ConfigError(
                    f"{first.uri} (model {first.model_id}, {len(first.classes)} classes) and {d.uri} (model "
                    f"{d.model_id}, {len(d.classes)} classes) were mapped with another {what}: their classes need "
                    "not mean the same.",
                    "map both dates with one model, or give --crosswalk (a YAML 'map:' section naming the common "
                    "group of every class of both).")
        return first.classes, [np.eye(len(first.classes)) for _ in dates]
    cw = reference.load_crosswalk(crosswalk, need_reference=False)
    mats = []
    for d in dates:
        cw.check_map_classes(d.classes)
        m = np.zeros((len(d.classes), len(cw.groups)))
        for i, c in enumerate(d.classes):
            m[i, cw.groups.index(cw.map[c])] = 1.0
        mats.append(m)
    return list(cw.groups), mats
