"""Command line: raw sentences to a model's int32 token ids, with a training run's vocabulary.

For `tfkd.evaluate`, a device, or a quick look at what the model sees.
Prints one line of space-separated ids per sentence (sentences from the
arguments, or one per line on stdin); `--output` also saves them as .npy.

Example:
  python -m tfkd.encode_text --vocab=runs/sst2/vocab.txt --max_length=48 "a gorgeous film"
  python -m tfkd.encode_text --vocab=runs/sst2/vocab.txt --output=ids.npy < sentences.txt
"""

import argparse
import sys
from typing import Optional, Sequence

import numpy as np

from tfkd.errors import ConfigError, DatasetError, TfkdError
from tfkd.vocabulary import Vocabulary
from tflite import cli


class _Parser(argparse.ArgumentParser):
  """argparse whose usage errors are `ConfigError`s: one line, exit code 2 (`run`)."""

  def error(self, message):
    raise ConfigError(f"{message}. Fix: see `python -m tfkd.encode_text --help`.")


def main(argv: Optional[Sequence[str]] = None) -> None:
  """`python -m tfkd.encode_text --vocab=... [--max_length=48] [--output=ids.npy] "text" ...`.

  Args:
    argv: the arguments after the program name; None reads `sys.argv`.

  Raises:
    ConfigError, DatasetError: bad arguments, a missing or non-UTF-8 vocabulary or input.

  Example:
    main(["--vocab=runs/sst2/vocab.txt", "a witty film"])   # prints e.g. "5 812 19 0 0 ..."
  """
  parser = _Parser(prog="python -m tfkd.encode_text",
                   description="Turn raw sentences into a model's token ids.")
  parser.add_argument("--vocab", required=True, help="vocab.txt written by a training run")
  parser.add_argument("--max_length", type=int, default=48,
                      help="the model's input length (config.data.max_length)")
  parser.add_argument("--no_lowercase", action="store_true",
                      help="keep case (if the run set data.lowercase=False)")
  parser.add_argument("--output", default="", help="also save the ids to this .npy file")
  parser.add_argument("sentences", nargs="*", help="sentences (default: lines of stdin)")
  args = parser.parse_args(argv)
  if args.max_length < 1:
    raise ConfigError(f"--max_length={args.max_length}: give the model's input length, a whole "
                      "number >= 1 (config.data.max_length of the run, e.g. 48).")
  vocabulary = Vocabulary.load(args.vocab, not args.no_lowercase)
  try:
    sentences = args.sentences or [line.rstrip("\n") for line in sys.stdin]
  except UnicodeDecodeError as e:
    raise DatasetError(f"The sentences on stdin are not valid UTF-8 ({e.reason} at byte "
                       f"{e.start}): re-encode them as UTF-8.") from e
  ids = vocabulary.encode(sentences, args.max_length)
  if args.output:
    np.save(args.output, ids)
  for row in ids:
    print(" ".join(map(str, row)))


def run() -> None:
  """The command: `main` with input errors printed as one line, exit code 2 (`tflite.cli`)."""
  cli.one_line_errors(main, (TfkdError,))(None)


if __name__ == "__main__":
  run()
