import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from raylib.heads import LogisticHead, load_head


def test_logistic_head_matches_sklearn_and_round_trips(tmp_path):
    X, y = make_classification(n_samples=300, n_features=20, n_informative=8, n_classes=4, random_state=0)
    head = LogisticHead(C=1.0, l2_normalize=False, class_weight=None).fit(X, y)
    Xs = (X - X.mean(0)) / X.std(0)
    ref = LogisticRegression(C=1.0, max_iter=2000).fit(Xs, y)
    np.testing.assert_allclose(head.predict_proba(X), ref.predict_proba(Xs), atol=1e-4)
    spec = head.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl"))
    loaded = load_head(tmp_path, spec)
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))
    assert loaded.get_params() == head.get_params()
    p = loaded.predict_proba(X)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert (loaded.predict(X) == y).mean() > 0.7


def test_binary_head():
    X, y = make_classification(n_samples=200, n_features=10, random_state=1)
    head = LogisticHead().fit(X, y)
    p = head.predict_proba(X)
    assert p.shape == (200, 2) and np.allclose(p.sum(1), 1)
    assert (head.predict(X) == y).mean() > 0.8
