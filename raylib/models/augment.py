"""Augmentations and test-time augmentation, written in torch (no torchvision).

Overhead imagery has no "up": the 8 symmetries of the square (the dihedral group D4:
4 rotations by 90 degrees, each with and without a horizontal flip) are all valid views
of a tile. Training draws one of them per tile; test-time augmentation (TTA) averages
the class probabilities over all 8.

Radiometric jitter varies each tile's brightness and contrast per band a little, in
[0, 1] units before normalisation, so a model does not learn one scene's exact
calibration.
"""

from __future__ import annotations

N_VIEWS = 8


def dihedral(x, k: int):
    """View ``k`` (0..7) of a batch ``x`` (N, C, H, W): rotation by ``k % 4`` quarter turns,
    after a horizontal flip when ``k >= 4``. View 0 is the identity."""
    import torch

    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x


def random_dihedral(x, generator=None):
    """Each tile of ``x`` (N, C, H, W, square) under its own random one of the 8 views."""
    import torch

    ks = torch.randint(0, N_VIEWS, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for k in range(N_VIEWS):
        sel = (ks == k).nonzero(as_tuple=True)[0].to(x.device)
        if len(sel):
            out[sel] = dihedral(x[sel], k)
    return out


def radiometric_jitter(x, strength: float, generator=None):
    """Per tile and band: ``x * gain + shift`` with gain in [1 - s, 1 + s] and shift in
    [-s/2, s/2] (``s = strength``), clipped to [0, 1]. ``strength = 0`` returns ``x``."""
    import torch

    if strength <= 0:
        return x
    n, c = x.shape[:2]
    gain = 1 + (torch.rand((n, c, 1, 1), generator=generator) * 2 - 1) * strength
    shift = (torch.rand((n, c, 1, 1), generator=generator) - 0.5) * strength
    return (x * gain.to(x) + shift.to(x)).clamp_(0.0, 1.0)


def tta_probs(predict, x, views: int = N_VIEWS, identity=None):
    """Mean of ``predict(view)`` (class probabilities) over the first ``views`` dihedral views
    (``identity``: ``predict(x)`` already computed, not computed again)."""
    total = identity if identity is not None else predict(x)
    for k in range(1, views):
        total = total + predict(dihedral(x, k))
    return total / views


def degrade(x, factor: float):
    """``x`` (N, C, H, W) as if imaged at a ground sampling distance ``factor`` times coarser
    and resampled back to the model's: an area-average down to ``round(H / factor)`` pixels,
    then bilinear up to ``H`` (what the map's read stage does to a coarse scene)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    small = (max(1, round(h / factor)), max(1, round(w / factor)))
    if small == (h, w):
        return x
    y = F.interpolate(x, size=small, mode="area")
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
