"""The stratified estimators against the numerical example of Olofsson et al. (2014)."""

import numpy as np
import pytest

from raylib.errors import InputError
from raylib.eval import accuracy

# Olofsson et al. 2014, RSE 148, section 5: rows = map, columns = reference, in the order
# deforestation, forest gain, stable forest, stable non-forest; mapped areas in 30 m pixels.
COUNTS = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
CLASSES = ["deforestation", "forest_gain", "stable_forest", "stable_non_forest"]
HA = [p * 0.09 for p in PIXELS]  # a 30 m pixel is 0.09 ha


@pytest.fixture(scope="module")
def est():
    return accuracy.stratified_estimates(COUNTS, HA, CLASSES)


def test_area_estimates_and_intervals_match_the_paper(est):
    published = {  # hectares: estimate, 95 % half-width
        "deforestation": (21_158, 6_158), "forest_gain": (11_686, 3_756),
        "stable_forest": (285_770, 15_510), "stable_non_forest": (581_386, 16_282),
    }
    for c, (area, ci) in published.items():
        assert est["area"][c]["estimate"] == pytest.approx(area, abs=0.5)
        assert est["area"][c]["ci95"] == pytest.approx(ci, abs=0.5)
    assert sum(est["area"][c]["estimate"] for c in CLASSES) == pytest.approx(sum(HA))


def test_accuracies_and_intervals_match_the_paper(est):
    assert round(est["overall_accuracy"]["estimate"], 2) == 0.95
    assert round(est["overall_accuracy"]["ci95"], 2) == 0.02
    users = {"deforestation": (0.88, 0.07), "forest_gain": (0.73, 0.10), "stable_forest": (0.93, 0.04),
             "stable_non_forest": (0.96, 0.02)}
    producers = {"deforestation": (0.75, 0.21), "forest_gain": (0.85, 0.25), "stable_forest": (0.93, 0.03),
                 "stable_non_forest": (0.96, 0.02)}
    for c in CLASSES:
        u, p = est["users_accuracy"][c], est["producers_accuracy"][c]
        assert (round(u["estimate"], 2), round(u["ci95"], 2)) == users[c]
        assert (round(p["estimate"], 2), round(p["ci95"], 2)) == producers[c]


def test_area_proportions_of_the_confusion_matrix(est):
    p = np.array(est["confusion_area_proportions"])
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p.sum(axis=1), np.array(PIXELS) / sum(PIXELS))
    assert p[0, 0] == pytest.approx(0.02 * 66 / 75)  # W_1 n_11 / n_1.


def test_same_figures_in_any_area_unit():
    px = accuracy.stratified_estimates(COUNTS, PIXELS, CLASSES)
    ha = accuracy.stratified_estimates(COUNTS, HA, CLASSES)
    assert px["area"]["deforestation"]["estimate"] * 0.09 == pytest.approx(ha["area"]["deforestation"]["estimate"])
    assert px["overall_accuracy"] == ha["overall_accuracy"]


def test_a_census_reports_its_own_confusion():
    counts = np.array([[8, 2], [1, 9]])
    e = accuracy.stratified_estimates(counts, counts.sum(axis=1), ["a", "b"])
    assert e["overall_accuracy"]["estimate"] == pytest.approx(17 / 20)
    assert e["area"]["a"]["estimate"] == pytest.approx(9)


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="shape"):
        accuracy.stratified_estimates([[1, 2]], [1, 2], ["a", "b"])
    with pytest.raises(InputError, match="non-negative"):
        accuracy.stratified_estimates([[1, 0], [0, 1]], [1, -2], ["a", "b"])
    with pytest.raises(InputError, match=r"\['b'\] have mapped area but no sample unit"):
        accuracy.stratified_estimates([[3, 1], [0, 0]], [5, 5], ["a", "b"])


def test_allocation_gives_rare_classes_enough_units():
    alloc = accuracy.allocate({"rare": 1.0, "common": 99.0}, 200, min_per_class=50)
    assert alloc == {"rare": 51, "common": 149}  # 50 each, the other 100 in proportion to area (1 : 99)
    assert sum(accuracy.allocate({"a": 1, "b": 2, "c": 3}, 31).values()) == 31
    with pytest.raises(InputError, match="cannot cover"):
        accuracy.allocate({"a": 1, "b": 2, "c": 3}, 2)


def test_sample_metrics():
    m = accuracy.sample_metrics([[5, 5], [0, 10]])
    assert m["accuracy"] == 0.75 and m["balanced_accuracy"] == pytest.approx((5 / 5 + 10 / 15) / 2)
