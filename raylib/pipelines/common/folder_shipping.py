"""Small local folders (a model, a backbone) shipped to every node through Ray's object
store: ``share_folder`` on the driver, ``local_folder`` on the workers."""

from __future__ import annotations

from raylib.io.cache import cache_dir, cached


def share_folder(folder: str):
    """Put a small local folder (a model, a backbone) into the Ray object store, so actors
    and workers on any node get it with ``local_folder``."""
    from pathlib import Path

    import ray

    root = Path(folder)
    return ray.put({p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()})


def local_folder(ref, kind: str) -> str:
    """A folder shared with ``share_folder``, unpacked once per node into the cache
    (``<cache>/<kind>/<digest>``); a plain string is returned as it is."""
    if isinstance(ref, str):
        return ref
    import hashlib

    import ray

    files = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + hashlib.sha256(files[rel]).digest())

    def unpack(tmp):
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)

    return str(cached(cache_dir() / kind / h.hexdigest()[:16], unpack))
