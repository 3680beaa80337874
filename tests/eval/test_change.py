"""eval.change: which changes count, on hand-made label series with known answers."""

import numpy as np

from raylib.eval import change


def _onehot(labels: np.ndarray, k: int, sure: float = 0.9) -> list[np.ndarray]:
    """Per date, tiles x k probabilities: ``sure`` on the label, the rest spread (NaN: -1)."""
    out = []
    for j in range(labels.shape[1]):
        p = np.full((len(labels), k), (1 - sure) / (k - 1))
        p[np.arange(len(labels)), np.maximum(labels[:, j], 0)] = sure
        p[labels[:, j] < 0] = np.nan
        out.append(p)
    return out


def _decide(labels, persist=False, min_p=0.5, min_conf=0.0, sure=0.9):
    labels = np.asarray(labels)
    probs = _onehot(labels, 3, sure)
    conf = np.stack([np.nanmax(np.where(np.isnan(p), -1, p), axis=1) for p in probs], axis=1)
    conf[labels < 0] = np.nan
    return change.decide(labels, probs, conf, min_p, min_conf, persist)


def test_p_change_is_one_minus_the_chance_both_dates_agree():
    p1 = np.array([[0.9, 0.1], [0.5, 0.5], [1.0, 0.0]])
    p2 = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    assert np.allclose(change.p_change(p1, p2), [1 - 0.18, 0.5, 0.0])


def test_two_dates_change_where_the_class_differs_and_both_are_sure():
    d = _decide([[0, 1], [0, 0], [2, 1], [0, -1], [-1, 1]])
    assert d.changed[:, 0].tolist() == [True, False, True, False, False]
    assert d.accepted[:, 1].tolist() == [1, 0, 1, 0, 1]  # an unobserved date keeps the class; a first one sets it
    assert np.allclose(d.p_change[:3, 0], [1 - 2 * 0.9 * 0.05 - 0.05 ** 2, 1 - 0.81 - 2 * 0.05 ** 2,
                                           1 - 2 * 0.9 * 0.05 - 0.05 ** 2])
    assert np.isnan(d.p_change[3:, 0]).all()
    assert d.first.tolist() == [0, 0, 0, 0, 1] and d.last.tolist() == [1, 1, 1, 0, 1]


def test_unsure_dates_do_not_change_a_tile():
    assert np.allclose(_decide([[0, 1]], sure=0.6).p_change, 1 - 2 * 0.6 * 0.2 - 0.2 ** 2)  # 0.72 ...
    assert not _decide([[0, 1]], sure=0.6, min_p=0.75).changed.any()
    assert _decide([[0, 1]], sure=0.6, min_p=0.7).changed.all()
    assert not _decide([[0, 1]], sure=0.6, min_p=0.7, min_conf=0.7).changed.any()  # ... but 0.6 < 0.7


def test_persistence_removes_flicker_and_keeps_lasting_change():
    series = [[0, 1, 0], [0, 1, 1], [0, 0, 1], [0, 1, 2]]
    raw = _decide(series)
    assert raw.changed.tolist() == [[True, True], [True, False], [False, True], [True, True]]
    assert change.flicker(raw.accepted) == (1, 4)  # the A -> B -> A tile
    kept = _decide(series, persist=True)
    assert kept.changed.tolist() == [[False, False], [True, False], [False, False], [False, False]]
    assert kept.accepted[:, -1].tolist() == [0, 1, 0, 0]
    assert change.flicker(kept.accepted) == (0, 4)
    assert kept.pending.tolist() == [False, False, True, True]  # a change into the last date awaits one more


def test_persistence_looks_past_a_date_without_observation():
    d = _decide([[0, 1, -1, 1], [0, 1, -1, 0]], persist=True)
    assert d.changed[:, 0].tolist() == [True, False]
    assert d.accepted[:, -1].tolist() == [1, 0]


def test_a_change_first_seen_unsure_counts_when_a_sure_date_shows_it():
    labels = np.array([[0, 1, 1]])
    probs = _onehot(labels, 3)
    probs[1][0] = [0.45, 0.5, 0.05]  # date 2 barely says class 1
    conf = np.array([[0.9, 0.5, 0.9]])
    d = change.decide(labels, probs, conf, 0.5, 0.6, False)  # date 2 is not sure enough
    assert d.changed.tolist() == [[False, True]]  # date 3 against date 1, the date that set class 0
    assert d.accepted.tolist() == [[0, 0, 1]]
