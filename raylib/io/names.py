"""The one rule for a name made from free text (a zone's name, a folder, a class, a STAC item
id) that becomes a file name, an S3 key part, or a STAC id: each run of other characters is
one ``sep``, and the name never starts or ends with one."""

from __future__ import annotations

import re

SAFE = r"0-9A-Za-z_.\-"  # (regex class ranges) file names, S3 keys and STAC ids all take these
STAC_ASSET = r"0-9A-Za-z_\-"  # the classification extension's names take no '.'


def safe_name(text: str, sep: str = "-", allowed: str = SAFE, default: str = "x") -> str:
    """``text`` with each run of characters outside ``allowed`` as one ``sep``, stripped of
    ``sep`` and '.' at its ends; ``default`` when nothing is left."""
    return re.sub(f"[^{allowed}]+", sep, text).strip(sep + ".") or default
