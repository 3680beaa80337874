"""Temperature scaling, expected calibration error, the out-of-distribution score."""

import numpy as np
import pytest

from raylib.eval.reliability import reliability, reliability_png
from raylib.models import calibration


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_temperature_recovers_an_overconfident_head():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 2
    y = np.array([rng.choice(5, p=p) for p in _softmax(logits)])  # labels drawn from the true probabilities
    over = _softmax(logits * 3)  # the head is 3x too sharp
    t = calibration.fit_temperature(over, y)
    assert t == pytest.approx(3.0, rel=0.1)
    fixed = calibration.apply_temperature(over, t)
    np.testing.assert_array_equal(fixed.argmax(1), over.argmax(1))  # the class never changes
    before = reliability(over.max(1), over.argmax(1) == y)["ece"]
    after = reliability(fixed.max(1), fixed.argmax(1) == y)["ece"]
    assert after < 0.03 < before


def test_reliability_bins():
    conf = np.array([0.05, 0.15, 0.95, 0.95])
    correct = np.array([False, True, True, False])
    r = reliability(conf, correct, n_bins=10)
    assert [b["n"] for b in r["bins"]] == [1, 1, 2]
    assert r["ece"] == pytest.approx(0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.45)
    assert reliability_png(r)[:8] == b"\x89PNG\r\n\x1a\n"


def test_ood_score_grows_away_from_the_training_embeddings():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 64)) * 3
    y = np.repeat(np.arange(3), 200)
    X = centres[y] + rng.normal(size=(600, 64))
    scorer = calibration.OODScorer.fit(X, y, n_components=16)
    inside = scorer.score(X)
    assert np.quantile(inside, 0.95) == pytest.approx(1.0, abs=1e-5)
    far = scorer.score(rng.normal(size=(50, 64)) * 3 + 10)
    assert far.min() > 1.5
    again = calibration.OODScorer.from_tensors(scorer.tensors())
    np.testing.assert_allclose(again.score(X[:10]), inside[:10], rtol=1e-5)
