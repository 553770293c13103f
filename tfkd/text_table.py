"""Reading a text classification table: the label and text columns of a TSV/CSV file, label ids.

A text dataset is two delimited files with a header row (train and test), each
naming its own label and text columns (SST-2's train.tsv calls the text
`sentence`, its dev.tsv `content`): a `TableSpec` says which. TSV files are
read without quote handling (SST-2's text holds quote marks); CSV files follow
the usual CSV quoting rules.

Example:
  texts, labels = read_table("../shared/data/sst2/dev.tsv", "label", "content")
  train_y, test_y, class_names = label_ids(train_labels, labels, ("negative", "positive"))
"""

import csv
import io
import os
from typing import NamedTuple, Sequence

import numpy as np

from tfkd.errors import DatasetError


class TableSpec(NamedTuple):
  """One delimited file of a text dataset and the header names of its two columns.

  A plain `(path, label_column, text_column)` tuple works wherever a
  `TableSpec` is asked for.

  Example:
    TableSpec("../shared/data/sst2/train.tsv", label_column="label", text_column="sentence")
  """
  path: str
  label_column: str
  text_column: str


def _delimiter(path: str, delimiter: str = "") -> str:
  """`delimiter` if given, else the one the extension implies."""
  if delimiter:
    return delimiter
  if path.lower().endswith((".tsv", ".tab")):
    return "\t"
  if path.lower().endswith(".csv"):
    return ","
  raise DatasetError(f"Cannot tell the delimiter of {path!r} from its extension: name it .tsv "
                     "or .csv, or pass delimiter= (e.g. '\\t').")


def read_utf8(path: str, what: str) -> str:
  """The text of a UTF-8 file; invalid bytes raise a `DatasetError` naming the file and line.

  Args:
    path: the file.
    what: what the file is, for the message (e.g. 'Text dataset file').

  Example:
    text = read_utf8("../shared/data/sst2/dev.tsv", "Text dataset file")
  """
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise DatasetError(
        f"{what} {path!r} is not valid UTF-8: line {line} has byte {data[e.start]:#04x} "
        f"({e.reason}). Fix: re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).") from e


def read_table(path: str, label_column: str, text_column: str, delimiter: str = ""):
  """Reads the label and text columns of a TSV/CSV file with a header row.

  Args:
    path: the file.
    label_column: header name of the label column.
    text_column: header name of the text column.
    delimiter: field separator; '' infers it from the extension (.tsv or .csv).

  Returns:
    (texts, labels): two lists of strings, in file order.

  Raises:
    DatasetError: the file is missing, empty or not UTF-8, a column is missing (the
      message lists the columns present) or a row has the wrong number of fields.

  Example:
    texts, labels = read_table("../shared/data/sst2/dev.tsv", "label", "content")
  """
  if not os.path.isfile(path):
    raise DatasetError(f"Text dataset file {path!r} does not exist: pass the path of a TSV or "
                       "CSV file with a header row.")
  sep = _delimiter(path, delimiter)
  with io.StringIO(read_utf8(path, "Text dataset file"), newline="") as f:
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    rows = csv.reader(f, delimiter=sep, quoting=quoting)
    header = next(rows, None)
    if not header:
      raise DatasetError(f"Text dataset file {path!r} is empty: it needs a header row naming "
                         f"its columns (e.g. {label_column!r} and {text_column!r}) and data rows.")
    header = [h.strip() for h in header]
    missing = [c for c in (label_column, text_column) if c not in header]
    if missing:
      raise DatasetError(
          f"Text dataset file {path!r} has no column {' or '.join(map(repr, missing))}; its "
          f"columns are {header}. Pass as label_column and text_column the names this file uses.")
    label_index, text_index = header.index(label_column), header.index(text_column)
    texts, labels = [], []
    for line, row in enumerate(rows, start=2):
      if not row:
        continue
      if len(row) != len(header):
        raise DatasetError(
            f"{path!r} line {line} has {len(row)} fields but the header has {len(header)}: "
            f"fix the row (a stray {'tab' if sep == chr(9) else repr(sep)} in the text?).")
      labels.append(row[label_index].strip())
      texts.append(row[text_index])
  if not texts:
    raise DatasetError(f"Text dataset file {path!r} has a header but no rows: add examples.")
  return texts, labels


def label_ids(train_labels: Sequence[str], test_labels: Sequence[str],
              class_names: Sequence[str] = ()):
  """Maps label strings to class indices.

  Integer labels (SST-2's 0/1) are their own index; other labels (e.g. 'pos',
  'neg') are indexed in the order of `class_names`, or sorted if none are given.

  Args:
    train_labels: label strings of the training file.
    test_labels: label strings of the test file.
    class_names: one name per class, index = label; () names integer classes
      '0', '1', ... and sorts named ones.

  Returns:
    (train_ids, test_ids, class_names): int32 arrays and the list of class names.

  Raises:
    DatasetError: a negative integer label, or a named label not in `class_names`.
    ValueError: fewer `class_names` than integer classes.

  Example:
    train, test, names = label_ids(["pos", "neg"], ["neg"], ["neg", "pos"])   # [1, 0], [0]
  """
  everything = list(train_labels) + list(test_labels)
  if all(l.lstrip("-").isdigit() for l in everything):
    train, test = (np.asarray([int(l) for l in ls], np.int32) for ls in (train_labels, test_labels))
    if min(everything, key=int).startswith("-"):
      raise DatasetError(f"Negative label {min(everything, key=int)} in the text dataset: labels "
                         "must be 0..num_classes-1 (or names).")
    count = int(max(train.max(), test.max())) + 1
    names = list(class_names) or [str(i) for i in range(count)]
    if len(names) < count:
      raise ValueError(f"class_names has {len(names)} names but labels go up to "
                        f"{count - 1}: give one name per class.")
    return train, test, names
  names = list(class_names) or sorted(set(train_labels))
  index = {name: i for i, name in enumerate(names)}
  unknown = sorted(set(everything) - set(index))
  if unknown:
    raise DatasetError(f"Labels {unknown[:10]} are not among the classes {names}: fix the "
                       "labels or list every class in class_names.")
  return (np.asarray([index[l] for l in train_labels], np.int32),
          np.asarray([index[l] for l in test_labels], np.int32), names)
