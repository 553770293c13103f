"""Classification metrics from predictions: confusion matrix, per-class precision, recall and F1.

Pure NumPy on labels and predicted labels, so the same numbers serve a Keras
model, any `.tflite` mode and any other classifier; tables in markdown and a
confusion-matrix figure (counts in the cells, colour normalised per true class).

A ratio whose denominator is 0 is defined as 0 (scikit-learn's
`zero_division=0`): a class never predicted has precision 0, a class absent from
the labels recall 0. Macro averages are taken over the classes that occur in the
labels or the predictions, as scikit-learn's `average="macro"` does without
`labels=`: a class the test set lacks and no model predicts does not count.

Example:
  confusion = confusion_matrix(test_y, np.argmax(scores, -1), num_classes=10)
  metrics = classification_metrics(confusion)
  metrics["macro"]["f1"], metrics["per_class"]["recall"][3], metrics["accuracy"]
"""

import textwrap
from typing import Sequence

import numpy as np

from tflite import files

# Past this many classes a confusion matrix's cells are too small for numbers (and its markdown
# table too wide): the figure shows colours only, and the counts stay in the JSON.
ANNOTATED_CLASSES = 20


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """Counts of (true class, predicted class) pairs.

  Args:
    labels: integer true classes, shape [N].
    predictions: integer predicted classes, shape [N].
    num_classes: classes of the task (the matrix is num_classes x num_classes).

  Returns:
    int64 array [num_classes, num_classes]; row = true class, column = predicted.

  Raises:
    ValueError: naming the argument, for mismatched lengths or classes outside
      0..num_classes-1.

  Example:
    confusion_matrix([0, 1, 1], [0, 1, 0], 2)   # [[1, 0], [1, 1]]
  """
  labels = np.asarray(labels).reshape(-1).astype(np.int64)
  predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels ({labels.size}) and predictions ({predictions.size}) must have "
                     "one entry per example each.")
  for name, values in (("labels", labels), ("predictions", predictions)):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(f"{name} hold classes {values.min()}..{values.max()}, outside "
                       f"0..{num_classes - 1} (num_classes={num_classes}).")
  counts = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes)


def _ratio(numerator, denominator) -> np.ndarray:
  """numerator / denominator elementwise, 0 where the denominator is 0."""
  numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
  return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def classification_metrics(confusion) -> dict:
  """Accuracy, per-class precision, recall, F1 and support, and their macro averages.

  Args:
    confusion: counts [classes, classes], row = true class (`confusion_matrix`).

  Returns:
    {"accuracy", "examples", "per_class": {"precision", "recall", "f1", "support"}
    (lists, index = class), "macro": {"precision", "recall", "f1"}, "confusion"
    (nested lists)}; plain Python numbers, ready for JSON.

  Example:
    classification_metrics([[1, 0], [1, 1]])["per_class"]["recall"]   # [1.0, 0.5]
  """
  confusion = np.asarray(confusion, np.int64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"confusion must be a square [classes, classes] matrix, not {confusion.shape}.")
  true_positives = np.diag(confusion)
  support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
  per_class = {"precision": _ratio(true_positives, predicted),
               "recall": _ratio(true_positives, support),
               # 2PR/(P+R) written with counts: 0 only when the class is in neither labels nor predictions.
               "f1": _ratio(2 * true_positives, support + predicted)}
  present = (support + predicted) > 0
  macro = {name: float(values[present].mean()) if present.any() else 0.0
           for name, values in per_class.items()}
  examples = int(confusion.sum())
  return {"accuracy": float(_ratio(true_positives.sum(), examples)), "examples": examples,
          "per_class": {**{k: v.tolist() for k, v in per_class.items()}, "support": support.tolist()},
          "macro": macro, "confusion": confusion.tolist()}


def score_metrics(labels, scores) -> dict:
  """`classification_metrics` of the top-1 predictions of class scores (logits or probabilities).

  Example:
    score_metrics(test_y, interpreter.predict("m_int8.tflite", test_x))["macro"]["f1"]
  """
  scores = np.asarray(scores)
  return classification_metrics(confusion_matrix(labels, np.argmax(scores, axis=-1),
                                                 scores.shape[-1]))


def _names(class_names: Sequence[str], count: int) -> list:
  return list(class_names) if len(class_names) == count else [str(i) for i in range(count)]


def per_class_markdown(metrics: dict, class_names: Sequence[str] = ()) -> str:
  """Precision, recall, F1 and support per class, then the macro averages, as a markdown table."""
  per_class = metrics["per_class"]
  lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
  for name, p, r, f, n in zip(_names(class_names, len(per_class["f1"])), per_class["precision"],
                              per_class["recall"], per_class["f1"], per_class["support"]):
    lines.append(f"| {name} | {p:.3f} | {r:.3f} | {f:.3f} | {n:,} |")
  macro = metrics["macro"]
  lines.append(f"| **macro** | {macro['precision']:.3f} | {macro['recall']:.3f} | "
               f"{macro['f1']:.3f} | {metrics['examples']:,} |")
  return "\n".join(lines)


def confusion_markdown(confusion, class_names: Sequence[str] = ()) -> str:
  """The confusion matrix as a markdown table: a row per true class, a column per predicted."""
  confusion = np.asarray(confusion)
  names = _names(class_names, len(confusion))
  lines = ["| true \\ predicted | " + " | ".join(names) + " |",
           "|---|" + "---:|" * len(names)]
  for name, row in zip(names, confusion):
    lines.append(f"| {name} | " + " | ".join(f"{n:,}" for n in row) + " |")
  return "\n".join(lines)


def plot_confusion(panels: dict, path: str, class_names: Sequence[str] = ()) -> str:
  """Confusion matrices, one panel per model: counts in the cells, colour = share of the true class.

  Colour normalised per row (the row's recall spread over the predicted classes)
  keeps a rare class as visible as a common one; the counts stay readable.

  Args:
    panels: title → confusion counts [classes, classes], in display order.
    path: the PNG to write (`tflite.files.save_figure`).
    class_names: one name per class (index = label), or () for numbers.

  Returns:
    `path`.

  Example:
    plot_confusion({"int8": metrics["confusion"]}, "runs/x/report_confusion.png", names)
  """
  count = len(panels)
  classes = len(next(iter(panels.values())))
  columns = min(count, 3)
  rows = -(-count // columns)
  side = max(3.6, 0.32 * classes + 1.4)
  fig, axes = files.new_figure(rows, columns, figsize=(side * columns + 1, (side + 0.6) * rows),
                               squeeze=False, layout="constrained")
  names = [name[:12] for name in _names(class_names, classes)]
  image = None
  for ax, (title, confusion) in zip(axes.flat, panels.items()):
    confusion = np.asarray(confusion)
    shares = _ratio(confusion, confusion.sum(axis=1, keepdims=True))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if classes <= ANNOTATED_CLASSES:
      for (i, j), n in np.ndenumerate(confusion):
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                color="white" if shares[i, j] > 0.5 else "black")
      ax.set_xticks(range(classes), names, rotation=90, fontsize=7)
      ax.set_yticks(range(classes), names, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    # Wrapped to the panel's width (about 12 characters an inch at this size) so titles never meet.
    ax.set_title("\n".join(textwrap.fill(line, int(side * 12)) for line in title.split("\n")),
                 fontsize=8)
  for ax in axes.flat[count:]:
    ax.axis("off")
  fig.colorbar(image, ax=axes, shrink=0.6, label="share of the true class")
  return files.save_figure(fig, path)
