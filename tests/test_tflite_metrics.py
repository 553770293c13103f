"""`tflite.metrics`: confusion matrix and per-class precision, recall, F1 against hand and loop references."""

import numpy as np
import pytest

from tflite import metrics

# Class 2 is in the labels but never predicted (precision 0/0), class 3 is predicted but
# absent from the labels (recall 0/0), class 4 is in neither (left out of the macro means).
LABELS = [0, 0, 0, 1, 1, 2, 2, 1]
PREDICTIONS = [0, 0, 1, 1, 3, 0, 1, 1]


def test_hand_computed_example_with_zero_divisions():
  confusion = metrics.confusion_matrix(LABELS, PREDICTIONS, num_classes=5)
  np.testing.assert_array_equal(confusion, [[2, 1, 0, 0, 0], [0, 2, 0, 1, 0], [1, 1, 0, 0, 0],
                                            [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
  result = metrics.classification_metrics(confusion)
  per_class = result["per_class"]
  np.testing.assert_allclose(per_class["precision"], [2 / 3, 2 / 4, 0, 0, 0])
  np.testing.assert_allclose(per_class["recall"], [2 / 3, 2 / 3, 0, 0, 0])
  np.testing.assert_allclose(per_class["f1"], [2 / 3, 4 / 7, 0, 0, 0])
  assert per_class["support"] == [3, 3, 2, 0, 0]
  # Macro over the four classes seen in labels or predictions (scikit-learn's average="macro").
  assert result["macro"]["precision"] == pytest.approx((2 / 3 + 1 / 2) / 4)
  assert result["macro"]["recall"] == pytest.approx((2 / 3 + 2 / 3) / 4)
  assert result["macro"]["f1"] == pytest.approx((2 / 3 + 4 / 7) / 4)
  assert result["accuracy"] == 0.5 and result["examples"] == 8
  # One-hot-ish scores give the same numbers through score_metrics.
  scores = np.eye(5)[PREDICTIONS] * 3.0 - 1.0
  assert metrics.score_metrics(LABELS, scores) == result


def test_random_predictions_match_a_loop_reference():
  rng = np.random.default_rng(0)
  labels, predictions = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
  result = metrics.classification_metrics(metrics.confusion_matrix(labels, predictions, 7))
  for c in range(7):
    tp = np.sum((labels == c) & (predictions == c))
    precision, recall = tp / np.sum(predictions == c), tp / np.sum(labels == c)
    assert result["per_class"]["precision"][c] == pytest.approx(precision)
    assert result["per_class"]["recall"][c] == pytest.approx(recall)
    assert result["per_class"]["f1"][c] == pytest.approx(2 * precision * recall / (precision + recall))
  assert result["accuracy"] == pytest.approx(np.mean(labels == predictions))
  assert result["macro"]["f1"] == pytest.approx(np.mean(result["per_class"]["f1"]))


def test_bad_inputs_name_the_argument():
  with pytest.raises(ValueError, match="one entry per example"):
    metrics.confusion_matrix([0, 1], [0], 2)
  with pytest.raises(ValueError, match=r"predictions hold classes 0..2, outside 0..1"):
    metrics.confusion_matrix([0, 1], [0, 2], 2)
  with pytest.raises(ValueError, match="square"):
    metrics.classification_metrics([[1, 2, 3]])


def test_tables_and_figure(tmp_path):
  result = metrics.classification_metrics(metrics.confusion_matrix(LABELS, PREDICTIONS, 4))
  names = ["cat", "dog", "bird", "fish"]
  table = metrics.per_class_markdown(result, names)
  assert "| dog | 0.500 | 0.667 | 0.571 | 3 |" in table
  assert "| **macro** | 0.292 | 0.333 | 0.310 | 8 |" in table
  assert "| bird | 1 | 1 | 0 | 0 |" in metrics.confusion_markdown(result["confusion"], names)
  path = metrics.plot_confusion({"a": result["confusion"], "b": result["confusion"]},
                                str(tmp_path / "confusion.png"), names)
  assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
