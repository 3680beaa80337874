"""Dihedral views, radiometric jitter and test-time augmentation (torch, no Ray)."""

import numpy as np
import pytest
import torch

from raylib.models.augment import N_VIEWS, dihedral, radiometric_jitter, random_dihedral, tta_probs


@pytest.fixture()
def tiles():
    return torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5) / 150


def test_the_eight_views_are_distinct_pixel_permutations(tiles):
    views = [dihedral(tiles, k) for k in range(N_VIEWS)]
    assert torch.equal(views[0], tiles)
    flat = {tuple(v[0, 0].flatten().tolist()) for v in views}
    assert len(flat) == 8  # an asymmetric tile has 8 different views
    for v in views:  # same pixels per band, moved
        assert torch.equal(v.flatten(2).sort(dim=-1).values, tiles.flatten(2).sort(dim=-1).values)
    # known geometry: view 1 is a quarter turn counter-clockwise, view 4 a left-right flip
    assert torch.equal(dihedral(tiles, 1)[..., 0, 0], tiles[..., 0, -1])
    assert torch.equal(dihedral(tiles, 4)[..., 0, 0], tiles[..., 0, -1])
    assert torch.equal(dihedral(tiles, 4)[..., -1, 0], tiles[..., -1, -1])


def test_random_dihedral_gives_each_tile_one_of_its_views(tiles):
    g = torch.Generator().manual_seed(3)
    batch = tiles.repeat(8, 1, 1, 1)
    out = random_dihedral(batch, g)
    seen = set()
    for i in range(len(batch)):
        ks = [k for k in range(N_VIEWS) if torch.equal(out[i], dihedral(batch[i : i + 1], k)[0])]
        assert len(ks) == 1
        seen.add(ks[0])
    assert len(seen) > 3  # not always the same view


def test_radiometric_jitter_is_a_per_tile_per_band_affine_map(tiles):
    assert radiometric_jitter(tiles, 0.0) is tiles
    x = tiles * 0.5 + 0.25  # away from the clip bounds
    out = radiometric_jitter(x, 0.1, torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, x)
    for i in range(2):
        for c in range(3):
            a, b = np.polyfit(x[i, c].flatten().numpy(), out[i, c].flatten().numpy(), 1)
            assert 0.9 - 1e-4 <= a <= 1.1 + 1e-4 and abs(b) <= 0.05 + 1e-4
            np.testing.assert_allclose(out[i, c].numpy(), a * x[i, c].numpy() + b, atol=1e-5)


def test_tta_averages_over_all_views(tiles):
    calls = []

    def predict(v):
        calls.append(v)
        return v[:, :1, 0, 0]  # "probability" = the top-left pixel of band 0

    p = tta_probs(predict, tiles)
    assert len(calls) == 8
    corners = tiles[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]  # every corner lands top-left twice
    torch.testing.assert_close(p[:, 0], corners.mean(1))
