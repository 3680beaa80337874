"""The end of a run that writes a map folder (``map``, ``remap``, ``change``), once: the
summary and ``_SUCCESS`` (``formats.map_folder.finish``), then, when the run passed, the
folder's STAC description and, with ``--cog``, its Cloud-Optimized GeoTIFFs."""

from __future__ import annotations

from raylib.formats import map_folder
from raylib.pipelines.common.exports import export_after
from raylib.pipelines.common.map_stac import describe_run


def finish_run(out: str, summary: dict, kind: str, cog: bool, extra: dict[str, str] | None = None,
               after_summary=None) -> dict:
    """Write ``summary`` (and ``_SUCCESS`` when ``summary["result"]`` is ok); a run that
    passed is then described in STAC as ``kind`` (``map``, ``store``, ``change``; ``extra``:
    assets beside the parts) and exported to COGs when ``cog``. Returns ``summary`` with
    ``stac`` and ``cog`` added."""
    map_folder.finish(out, summary, after_summary=after_summary)
    if summary["result"] != "ok":
        return summary
    summary["stac"] = describe_run(out, kind, extra)
    if cog:
        summary["cog"] = export_after(out)
    return summary
