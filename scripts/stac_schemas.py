"""Install the JSON schemas of the STAC extensions ``landcover export`` writes, for offline
validation (``formats.stac_items.validate``), from the package index: the source
distributions of PySTAC's extension packages carry them in their recorded test responses.

    .venv/bin/python scripts/stac_schemas.py        # (scripts/install.sh runs it)

Writes ``<venv>/share/landcover-ray/stac-schemas/<host>/<path>`` for each schema URL below;
one already there is kept. A schema that cannot be fetched is reported, and validation then
says which schema it lacks.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

# schema URL -> the source distribution whose recorded test responses hold it
SCHEMAS = {
    "https://stac-extensions.github.io/classification/v2.0.0/schema.json": "pystac-ext-classification==2.0.1",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "pystac-ext-raster==1.1.1",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json": "pystac-ext-projection==2.0.1",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json": "pystac-ext-file==2.1.1",
    "https://stac-extensions.github.io/processing/v1.0.0/schema.json": "pystac-ext-processing==1.2.0",
}


def folder() -> Path:
    return Path(sys.prefix) / "share" / "landcover-ray" / "stac-schemas"


def target(url: str) -> Path:
    return folder() / re.sub(r"^https?://", "", url)


def _responses(sdist: Path) -> dict[str, str]:
    """URL -> body of every recorded response in a source distribution's test cassettes."""
    out: dict[str, str] = {}
    with tarfile.open(sdist) as tar:
        for m in tar.getmembers():
            if "/cassettes/" not in m.name or not m.name.endswith(".yaml"):
                continue
            doc = yaml.safe_load(tar.extractfile(m).read()) or {}
            for it in doc.get("interactions", []):
                body = (it.get("response") or {}).get("body") or {}
                text = body.get("string") if isinstance(body, dict) else None
                if text and (it.get("response", {}).get("status") or {}).get("code") == 200:
                    out.setdefault(it["request"]["uri"], text)
    return out


def main() -> int:
    todo = {u: d for u, d in SCHEMAS.items() if not target(u).exists()}
    missing = []
    with tempfile.TemporaryDirectory() as tmp:
        for dist in sorted(set(todo.values())):
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                                "-d", tmp, dist], capture_output=True, text=True)
            if r.returncode:
                print(f"stac_schemas: cannot download {dist}: {r.stderr.strip()[-300:]}", file=sys.stderr)
        found: dict[str, str] = {}
        for sdist in Path(tmp).glob("*.tar.gz"):
            found.update(_responses(sdist))
        for url in todo:
            if url in found:
                target(url).parent.mkdir(parents=True, exist_ok=True)
                target(url).write_text(found[url])
            else:
                missing.append(url)
    for url in missing:
        print(f"stac_schemas: {url} not found; exports will say they cannot validate against it", file=sys.stderr)
    print(f"stac schemas: {len(SCHEMAS) - len(missing)} of {len(SCHEMAS)} in {folder()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
