"""The map's pictures: how sure a quick-look's class colours look."""

import io

import numpy as np
from PIL import Image

from raylib.eval import drawing, reports

CLASSES = ["AnnualCrop", "Forest"]


def _panel(png: bytes) -> np.ndarray:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    head = 6 + (drawing.TITLE + 4) + 4  # a title of one line
    return img[head:head + 512, 8:8 + 512]  # the class panel (no thumbnail): below the title, after the gap


def test_a_quicklook_pales_unsure_tiles_and_hatches_tiles_unlike_the_training_data():
    labels = np.ones((2, 2), np.int16)  # four Forest tiles of 64 px on a 128 px scene: 256 px each
    conf = np.array([[0.95, 0.4], [np.nan, 0.95]], np.float32)
    ood = np.array([[0.5, 0.5], [np.nan, 2.0]], np.float32)
    plain = reports.quicklook_png("t", labels, CLASSES, None, (128, 128), (64, 64))
    drawn = reports.quicklook_png("t", labels, CLASSES, None, (128, 128), (64, 64), conf, ood)
    forest = np.array(reports.NAMED_COLOURS["Forest"])
    p = _panel(drawn)
    assert (p[10, 10] == forest).all()  # sure: full colour
    palest = np.round(forest * reports.PALEST + 255 * (1 - reports.PALEST))
    assert (p[10, 300] == palest).all()  # confidence 0.4: the palest
    assert (p[300, 10] == forest).all()  # no confidence: as it was
    far = p[256:, 256:].reshape(-1, 3)
    hatch = (far == reports.HATCH).all(axis=1)
    assert 0.2 < hatch.mean() < 0.3 and ((far == forest).all(axis=1) | hatch).all()  # stripes over the colour
    assert not (p[:256] == reports.HATCH).all(axis=2).any()  # only the out-of-distribution tile
    # the legend says what paler and hatched mean: two more lines
    assert Image.open(io.BytesIO(drawn)).height == Image.open(io.BytesIO(plain)).height + 2 * drawing.LINE
    assert (_panel(plain) == forest).all(axis=2).all()  # without them, every tile in full colour
    # between the two ends, linear in confidence
    mid = reports.shaded(forest[None].astype(np.uint8), np.array([0.65], np.float32))[0]
    w = reports.PALEST + (1 - reports.PALEST) * 0.5
    assert (mid == np.round(forest * w + 255 * (1 - w))).all()


def test_a_display_products_thumbnail_keeps_its_colour_balance():
    """NAIP is colour-balanced already: one stretch for the three bands keeps a grey pixel grey
    and a reddish one reddish; a stretch per band (for hazy satellite scenes) lifts whichever
    band is dimmest."""
    rng = np.random.default_rng(0)
    rgb = np.stack([rng.integers(40, 200, (50, 50)), rng.integers(60, 170, (50, 50)),
                    rng.integers(50, 150, (50, 50))]).astype(np.uint8)
    rgb[:, 0, 0] = (120, 120, 120)  # grey
    rgb[:, 0, 1] = (150, 110, 100)  # a reddish-brown field
    common = reports.stretch(rgb, common=True)
    assert len(set(common[0, 0].tolist())) == 1  # grey stays grey
    assert common[0, 1, 0] > common[0, 1, 1] > common[0, 1, 2]  # reddish stays reddish, in order
    per_band = reports.stretch(rgb)
    assert len(set(per_band[0, 0].tolist())) > 1  # a stretch per band tints the grey pixel
    lo, hi = np.percentile(rgb.astype(np.float32), [2, 98])
    assert common[0, 0, 0] == int(np.clip((120 - lo) / (hi - lo) * 255, 0, 255))
