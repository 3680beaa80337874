"""Objects the driver puts in Ray's object store once (the scene list, the tiles done by an
earlier run, the scenes' centres), fetched once per worker. No torch, no model code: the
map's plan and read tasks import it.
"""

from __future__ import annotations

_SHARED: dict = {}


def shared(ref):
    """An object put in the object store once by the driver (the scene list, the tiles done
    by an earlier run, the scenes' centres), fetched once per worker; a plain value (not an
    object reference: a test's, or None) as it is."""
    import ray

    if not isinstance(ref, ray.ObjectRef):
        return ref
    key = ref.hex()
    if key not in _SHARED:
        if len(_SHARED) >= 4:  # the objects of an earlier job on this worker
            _SHARED.clear()
        _SHARED[key] = ray.get(ref)
    return _SHARED[key]
