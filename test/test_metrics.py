"""Metrics against trusted values: scikit-learn's ARI and hand-worked cases."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from split_perception.training import metrics as M


def test_ari_matches_sklearn_on_random_labelings():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 300))
        t = rng.integers(0, rng.integers(1, 8), n)
        p = rng.integers(0, rng.integers(1, 8), n)
        if rng.random() < 0.3:  # near-perfect, permuted labels
            p = (t * 3 + 1) % 11
            p[rng.integers(0, n)] = 0
        assert M.adjusted_rand_index(t, p) == pytest.approx(adjusted_rand_score(t, p), abs=1e-10)


@pytest.mark.parametrize(
    "t,p",
    [([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [2, 1, 0]), ([0, 0, 1, 1], [0, 1, 2, 3]), ([0, 1, 2, 3], [0, 0, 0, 0])],
)
def test_ari_edge_cases_match_sklearn(t, p):
    assert M.adjusted_rand_index(t, p) == pytest.approx(adjusted_rand_score(t, p))


def test_foreground_ari_ignores_background_and_permutations():
    true = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[5, 3, 7, 7], [9, 4, 4, 7]])  # background predicted as anything
    assert M.foreground_ari(true, pred) == pytest.approx(1.0)
    shuffled = np.array([[5, 3, 7, 4], [9, 4, 7, 7]])
    fg = true != 0
    assert M.foreground_ari(true, shuffled) == pytest.approx(adjusted_rand_score(true[fg], shuffled[fg]))
    assert np.isnan(M.foreground_ari(np.zeros((2, 2)), np.zeros((2, 2))))


def test_segmentation_covering_perfect_split_and_merged():
    true = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    assert M.mean_segmentation_covering(true, true + 10) == pytest.approx(1.0)
    # object 2 split in two halves: its best IoU is 0.5; object 1 perfect
    split = np.array([0, 0, 1, 1, 3, 3, 4, 4])
    assert M.mean_segmentation_covering(true, split) == pytest.approx((1.0 + 0.5) / 2)
    # objects 1 and 2 merged: IoU 2/6 and 4/6
    merged = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    assert M.mean_segmentation_covering(true, merged) == pytest.approx((2 / 6 + 4 / 6) / 2)


def test_counting_metrics():
    assert M.count_accuracy([1, 2, 3, 0], [1, 2, 2, 0]) == 0.75
    assert M.count_error([1, 2, 3, 0], [1, 2, 5, 1]) == 0.75
    with pytest.raises(ValueError):
        M.count_accuracy([1], [1, 2])


def test_box_iou_hand_values():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    np.testing.assert_allclose(M.box_iou(a, b), [[1 / 7, 1.0, 0.0]])


def test_ap_perfect_detections_is_one_and_misses_lower_it():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[5, 5, 15, 15]])]
    preds = [t.copy() for t in truth]
    scores = [np.array([0.9, 0.8]), np.array([0.7])]
    assert M.mean_average_precision(preds, scores, truth) == pytest.approx(1.0)
    # one object missed: recall tops at 2/3, precision 1 -> AP 2/3 at every threshold
    assert M.mean_average_precision([preds[0], np.zeros((0, 4))], [scores[0], np.zeros(0)], truth) == pytest.approx(2 / 3)


def test_ap_hand_worked_ranking():
    # one image, two objects; ranking: TP (0.9), FP (0.8), TP (0.7)
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
    preds = [np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]])]
    scores = [np.array([0.9, 0.8, 0.7])]
    # precision/recall: (1, .5), (.5, .5), (2/3, 1) -> envelope area .5*1 + .5*2/3
    assert M.average_precision_at(preds, scores, truth, 0.5) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_ap_duplicate_detection_is_a_false_positive():
    truth = [np.array([[0, 0, 10, 10]])]
    preds = [np.array([[0, 0, 10, 10], [0, 0, 10, 10]])]
    # TP then FP: recall reaches 1 at precision 1 -> AP 1; but the duplicate never adds a TP
    assert M.average_precision_at(preds, [np.array([0.9, 0.8])], truth, 0.5) == pytest.approx(1.0)
    # if the duplicate ranks first and the true one is shifted below the threshold...
    preds = [np.array([[0, 0, 10, 10], [3, 3, 13, 13]])]
    assert M.average_precision_at(preds, [np.array([0.9, 0.8])], truth, 0.9) == pytest.approx(1.0)
    assert M.average_precision_at(preds, [np.array([0.5, 0.8])], truth, 0.9) == pytest.approx(0.5)


def test_reconstruction_mse():
    a = np.zeros((2, 3, 4, 4))
    b = np.full((2, 3, 4, 4), 0.5)
    assert M.reconstruction_mse(a, b) == pytest.approx(0.25)


def test_paired_difference_interval_matches_scipy_bootstrap():
    """The interval for the mean difference of two models' per-scene scores against scipy's paired
    percentile bootstrap (another implementation and other random draws: endpoints within 0.01)."""
    from scipy import stats

    rng = np.random.default_rng(3)
    a = (rng.random(300) < 0.88).astype(float)
    b = np.where(rng.random(300) < 0.9, a, 1 - a)  # the same scenes, 10% of answers flipped
    mean, lo, hi = M.paired_difference_interval(a, b, resamples=4000)
    ref = stats.bootstrap((a, b), lambda x, y: np.mean(x - y), paired=True, vectorized=False, n_resamples=4000,
                          method="percentile", random_state=5).confidence_interval
    assert mean == pytest.approx(np.mean(a - b))
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    assert lo < mean < hi
    # the same answers: no difference and no width; a model right where the other is wrong everywhere: 1
    assert M.paired_difference_interval(a, a) == (0.0, 0.0, 0.0)
    assert M.paired_difference_interval(np.ones(50), np.zeros(50)) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        M.paired_difference_interval(a, b[:-1])


def test_pooled_difference_interval_weighs_groups_alike_and_narrows_with_more_groups():
    rng = np.random.default_rng(4)
    groups = []
    for n in (100, 300):  # unequal sizes: each group's mean counts once
        a = (rng.random(n) < 0.8).astype(float)
        groups.append((a, np.where(rng.random(n) < 0.85, a, 1 - a)))
    mean, lo, hi = M.pooled_difference_interval(groups)
    assert mean == pytest.approx(np.mean([np.mean(a - b) for a, b in groups]))
    assert lo < mean < hi
    one = M.paired_difference_interval(*groups[0])
    assert hi - lo < one[2] - one[1]  # more scenes, a narrower interval
