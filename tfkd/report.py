"""The run report: `report.md` (tables), `report.json` (everything), `report.png` (plot) and
`report_confusion.png` (each model's confusion matrix).

Example:
  table = write(workdir, [Row("teacher (Keras float)", "teacher", 274042, 1_200_000, 0.88, 1.9, 2.1)], {})
"""

import dataclasses
import os
from typing import Optional

from tflite import files, metrics


@dataclasses.dataclass
class Row:
  """One model in the report.

  Attributes:
    label: what the row is, e.g. "distilled student, int8 TFLite".
    model: model or file name.
    parameters: trainable and frozen parameters (None if unknown).
    file_bytes: size of the saved model file.
    accuracy: test accuracy in [0, 1].
    latency_ms: single-stream LiteRT latency, 1 thread: the median of the quietest of the
      interleaved timing rounds (`tflite.interpreter.idle_ms`), which a shared machine's slow
      spells leave out (BENCHMARKS §19).
    latency_p90_ms: the p90 over all rounds, spells included.
    gzip_bytes: size of the file after gzip -9 (None if not measured); zeros from
      pruning compress, so this is where sparsity saves storage.
    sparsity: share of zero weights in the `.tflite`'s conv and dense kernels
      (None if not measured; see `tflite.sparsity.tflite_sparsity`).
    macro_f1: F1 averaged over the classes (None if not measured).
    metrics: `tflite.metrics.classification_metrics` of the same predictions as
      `accuracy`: per-class precision, recall, F1, support, and the confusion matrix.
    pgd_clean_accuracy / pgd_accuracy: accuracy on the images the PGD attack runs on
      (`report.robust_examples` of the test set), before and after the attack (None if
      not measured; see `tfkd.report_stage.robust_section`).
  """
  label: str
  model: str
  parameters: Optional[int]
  file_bytes: int
  accuracy: float
  latency_ms: Optional[float] = None
  latency_p90_ms: Optional[float] = None
  gzip_bytes: Optional[int] = None
  sparsity: Optional[float] = None
  macro_f1: Optional[float] = None
  metrics: Optional[dict] = None
  pgd_clean_accuracy: Optional[float] = None
  pgd_accuracy: Optional[float] = None


def _fmt(value, spec):
  return "—" if value is None else format(value, spec)


def markdown_table(rows) -> str:
  # Compression columns appear once any row measured them (see tfkd.compress).
  compression = any(r.gzip_bytes is not None or r.sparsity is not None for r in rows)
  # Robustness columns appear once any row was attacked (report.robust).
  robust = any(r.pgd_accuracy is not None for r in rows)
  lines = ["| model | parameters | file bytes | test accuracy | macro F1 | LiteRT ms |"
           + (" gzip bytes | weight sparsity |" if compression else "")
           + (" clean (PGD images) | PGD accuracy |" if robust else ""),
           "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if compression else "")
           + ("---:|---:|" if robust else "")]
  for r in rows:
    lines.append(f"| {r.label} | {_fmt(r.parameters, ',')} | {r.file_bytes:,} | "
                 f"{r.accuracy * 100:.2f}% | {_fmt(r.macro_f1, '.3f')} | "
                 f"{_fmt(r.latency_ms, '.3f')} |"
                 + (f" {_fmt(r.gzip_bytes, ',')} | {_fmt(r.sparsity, '.1%')} |" if compression else "")
                 + (f" {_fmt(r.pgd_clean_accuracy, '.2%')} | {_fmt(r.pgd_accuracy, '.2%')} |"
                    if robust else ""))
  return "\n".join(lines)


def plot(rows, path: str) -> None:
  """Accuracy against file size (log scale), one labelled point per model."""
  fig, ax = files.new_figure(figsize=(8, 5))
  markers = "osD^vP*Xh<>"
  for i, r in enumerate(rows):  # a legend, not annotations: models of equal size overlap
    ax.scatter(r.file_bytes / 1024, r.accuracy * 100, s=50, marker=markers[i % len(markers)],
               label=f"{r.label}: {r.accuracy * 100:.2f}%")
  ax.set_xscale("log")
  ax.set_xlabel("file size (KiB, log scale)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title("Accuracy against size")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  files.save_figure(fig, path)


def per_class_section(measured: dict, workdir: str, class_names=(), examples="the test set") -> str:
  """Each model's per-class table and confusion matrix in markdown, under report_confusion.png.

  Args:
    measured: label → `tflite.metrics.classification_metrics`, in display order.
    workdir: where report_confusion.png (a panel per model) is written.
    class_names: the dataset's class names (index = label); () numbers them.
    examples: what the metrics were measured on, for the text.

  Returns:
    The markdown of the section.
  """
  metrics.plot_confusion({f"{label}\n{m['accuracy'] * 100:.2f}%, macro F1 {m['macro']['f1']:.3f}":
                          m["confusion"] for label, m in measured.items()},
                         os.path.join(workdir, "report_confusion.png"), class_names)
  parts = [f"Precision, recall and F1 of each class on {examples}, from the predictions that "
           "give the accuracy above (a ratio 0/0 counts as 0; macro = mean over the classes "
           "present). Confusion matrices: a row per true class, a column per predicted class; "
           "the figure colours each row by its share of the true class.",
           "", "![confusion matrices](report_confusion.png)"]
  for label, m in measured.items():
    parts += ["", f"### {label}", "", metrics.per_class_markdown(m, class_names)]
    if len(m["confusion"]) <= metrics.ANNOTATED_CLASSES:
      parts += ["", metrics.confusion_markdown(m["confusion"], class_names)]
  return "\n".join(parts)


def write(workdir: str, rows, meta: dict, sections=(), class_names=()) -> str:
  """Writes report.md, report.json, report.png and report_confusion.png in `workdir`.

  Args:
    workdir: output folder.
    rows: `Row`s, in display order.
    meta: extra facts for report.json (config, test size, latency settings and "cpu").
    sections: extra (title, markdown) sections appended to report.md.
    class_names: the dataset's class names (index = label) for the per-class
      tables; () numbers the classes.

  Returns:
    The markdown table.
  """
  table = markdown_table(rows)
  body = ["# tfkd report", "", table, "",
          f"Latency: single-stream LiteRT invoke on {meta['latency']['cpu']}, after warm-up, "
          "the files timed in turn over "
          "interleaved rounds spread over `report.latency_spread_s`; each row gives the median "
          "of its quietest round (report.json also has p90 over all rounds). Keras rows are "
          "timed on their float32 TFLite conversion. "
          "File bytes: `.keras` for Keras rows, `.tflite` otherwise. "
          "Macro F1: the mean of the classes' F1 (per class below).",
          "", "![accuracy against size](report.png)"]
  measured = {r.label: r.metrics for r in rows if r.metrics}
  if measured:
    sections = [*sections, ("Per-class metrics", per_class_section(measured, workdir, class_names))]
  for title, text in sections:
    body += ["", f"## {title}", "", text]
  files.write_atomic(os.path.join(workdir, "report.md"), "\n".join(body) + "\n")
  files.write_json(os.path.join(workdir, "report.json"),
                   {"rows": [dataclasses.asdict(r) for r in rows], "class_names": list(class_names),
                    **meta})
  if rows:
    plot(rows, os.path.join(workdir, "report.png"))
  return table
