"""Bad inputs to every entry point: each ends with one `ERROR:` line naming the fix, exit code 2.

`CASES` is the table of bad inputs (docs/errors.md is written from it:
`python -m tests.test_bad_inputs table`). The entry points run for real, in a
few child processes: each imports TensorFlow once and runs its command's cases
one after another in-process (`drive`), as `python -m <module> <args>` would,
and reports each case's exit code and stderr. A handful of cases also run as
whole processes of their own, where the full stderr of the process is checked.
The tests check, for each case: exit code 2, no traceback, exactly one `ERROR:`
line, the expected message; and that nothing was lost (existing workdir files
untouched) and no code stored in a model file ran.
"""

import contextlib
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import traceback

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_MARK = "BAD_INPUT_RESULTS "
TF_STARTUP_LINE = re.compile(  # TensorFlow's C++ logging at import, before Python runs
    r"WARNING: All log messages before absl::InitializeLog|[IWE]0000 00:00:")
MARKER = "lambda_ran.txt"  # the Lambda layer of lambda.h5 writes this file if its code runs

TRAIN = ["--config=configs/cifar10_quick.py", "--workdir={tmp}/run", "--config.data.path={images}",
         "--config.data.image_size=(16, 16)", "--config.data.val_size=0"]
EVALUATE = ["--data={images}"]

# (entry point, case, arguments, regex the ERROR line must match). {tmp}, {images}, ... are
# files `build_world` makes. Grouped by entry point: each group runs in one child process.
CASES = [
    # Config file and flags, before anything runs.
    ("tfkd.train", "config file missing", ["--config=configs/nope.py", "--workdir={tmp}/run"],
     r"Config file 'configs/nope.py' \(--config\) does not exist: pass the path"),
    ("tfkd.train", "config file with a syntax error", ["--config={tmp}/broken_config.py",
                                                       "--workdir={tmp}/run"],
     r"broken_config.py' \(--config\) cannot be loaded: SyntaxError: .*Fix: correct the file"),
    ("tfkd.train", "unknown config key", TRAIN + ["--config.train.epochz=3"],
     r"Unknown config key 'train.epochz'.*did you mean 'epochs'"),
    ("tfkd.train", "a word where a number belongs", TRAIN + ["--config.train.epochs=three"],
     r"flag --config.train.epochs=three: .*Fix: correct the flag"),
    # Config values, checked before any data is read (tfkd.config_checks).
    ("tfkd.train", "epochs 0 (existing workdir)", TRAIN[:1] + ["--workdir={existing}"] + TRAIN[2:]
     + ["--config.train.epochs=0"], r"config.train.epochs=0 is not valid: use a whole number >= 1"),
    ("tfkd.train", "batch size below 1", TRAIN + ["--config.train.batch_size=-1"],
     r"config.train.batch_size=-1 is not valid: use a whole number >= 1"),
    ("tfkd.train", "batch larger than the training split", TRAIN + [
        "--config.train.batch_size=4096", "--config.stages=('scratch',)",
        "--config.data.adapt=False"],  # adapting would lower the batch size instead
     r"config.train: .*batch_size=4096"),
    ("tfkd.train", "learning rate 0", TRAIN + ["--config.train.learning_rate=0"],
     r"config.train.learning_rate=0.0 is not valid: use a number > 0"),
    ("tfkd.train", "image size 0", TRAIN[:3] + ["--config.data.image_size=(0, 32)"],
     r"config.data.image_size=\(0, 32\) is not valid: use \(height, width\)"),
    ("tfkd.train", "negative validation size", TRAIN[:4] + ["--config.data.val_size=-5"],
     r"config.data.val_size=-5 is not valid: use a whole number >= 0"),
    ("tfkd.train", "no labels kept", TRAIN + ["--config.data.label_fraction=0"],
     r"config.data.label_fraction=0.0 is not valid: use a number in \(0, 1\]"),
    ("tfkd.train", "view seed below -1", TRAIN + ["--config.data.view_seed=-2"],
     r"config.data.view_seed=-2 is not valid: use a seed >= 0, or -1 for config.seed"),
    ("tfkd.train", "temperature below 0", TRAIN + ["--config.distill.temperature=-1"],
     r"config.distill.temperature=-1.0 is not valid: use a number > 0"),
    ("tfkd.train", "multitask stages without a task-B mapping", TRAIN + [
        "--config.stages=('teacher_b',)"], r"multitask.task_b_classes is empty: give every class"),
    ("tfkd.train", "task-B mapping missing a class", TRAIN + [
        "--config.stages=('teacher_b',)", "--config.multitask.task_b_classes=('circle:round',)"],
     r"config.multitask: task_b_classes must give every class .*missing \['square', 'stripes'\]"),
    ("tfkd.train", "unknown adversarial method", TRAIN + ["--config.distill.adversarial.method=trades"],
     r"config.distill.adversarial.method='trades' is not valid: use one of \['none', 'ard', 'rslad'\]"),
    ("tfkd.train", "unknown optimizer", TRAIN + ["--config.train.optimizer=adam"],
     r"config.train.optimizer='adam' is not valid: use one of \['sgd', 'adamw'\]"),
    ("tfkd.train", "float16 training", TRAIN + ["--config.train.precision=mixed_float16"],
     r"config.train.precision='mixed_float16' is not valid: use one of "
     r"\['float32', 'mixed_bfloat16'\]"),
    ("tfkd.train", "sparsity above 1", TRAIN + ["--config.compress.prune.sparsity=1.5"],
     r"config.compress.prune.sparsity=1.5 is not valid: use a number in \(0, 1\)"),
    ("tfkd.train", "unknown export mode", TRAIN + ["--config.export.modes=('int7',)"],
     r"config.export.modes=\('int7',\) is not valid: use a non-empty tuple of \['float32'"),
    ("tfkd.train", "edge mode not exported", TRAIN + ["--config.export.modes=('float32',)"],
     r"config.report.edge_mode='int8' is not among export.modes=\('float32',\)"),
    ("tfkd.train", "unknown teacher compression", TRAIN + ["--config.teacher.compress=int4"],
     r"config.teacher.compress='int4' is not valid: use one of \['none', 'prune', 'int8'"),
    ("tfkd.train", "int8 teacher without the cache", TRAIN + ["--config.teacher.compress=int8"],
     r"config.teacher.compress='int8' makes a teacher that runs on LiteRT.*set "
     r"distill.cached_teacher=True"),
    ("tfkd.train", "teacher logits file missing", TRAIN + [
        "--config.distill.teacher_logits_path={tmp}/nowhere.npy"],
     r"config.distill.teacher_logits_path='.*nowhere.npy' is not a file"),
    ("tfkd.train", "teacher module not importable", TRAIN + [
        "--config.teacher.import_modules=('tfkd_no_such_layers',)"],
     r"config.teacher.import_modules: 'tfkd_no_such_layers' cannot be imported"),
    ("tfkd.train", "keras-hub teacher on images", TRAIN + ["--config.teacher.kind=keras_hub"],
     r"config.teacher.kind='keras_hub' reads text, but data.source='folder'"),
    # Files and folders.
    ("tfkd.train", "dataset folder missing", TRAIN[:2] + ["--config.data.path={tmp}/nowhere"]
     + TRAIN[3:], r"config.data.path='.*nowhere' does not exist or is not a folder"),
    ("tfkd.train", "dataset folder without class folders", TRAIN[:2]
     + ["--config.data.path={empty_dataset}"] + TRAIN[3:],
     r"Dataset folder '.*empty_dataset/train' has no class subfolders"),
    ("tfkd.train", "workdir is a file", TRAIN[:1] + ["--workdir={tmp}/a_file"] + TRAIN[2:],
     r"--workdir='.*a_file' is a file, not a folder"),
    ("tfkd.train", "workdir not writable", TRAIN[:1] + ["--workdir=/sys/fs"] + TRAIN[2:],
     r"--workdir='/sys/fs' cannot be written \(.*\): pass a folder you can write to"),
    ("tfkd.train", "one class", TRAIN[:2] + ["--config.data.path={one_class}"] + TRAIN[3:],
     r"The dataset has 1 class\(es\) \(\['only'\]\): a classifier needs at least two"),
    ("tfkd.train", "broken symlink in a class folder", TRAIN[:2] + ["--config.data.path={symlink}"]
     + TRAIN[3:], r"Class folder '.*circle' lists 1 image name\(s\) that are not readable files "
     r"\(broken symlinks\?\): \['dangling.jpg'\]"),
    ("tfkd.train", "image file that is not an image", TRAIN[:2] + ["--config.data.path={corrupt}"]
     + TRAIN[3:], r"1 image file\(s\) cannot be read or decoded: .*not_an_image.jpg \(Unknown "
     r"image file format. One of JPEG"),
    ("tfkd.train", "invalid UTF-8 in a TSV", TRAIN + [
        "--config.data.source=text", "--config.data.augment=False",
        "--config.data.train_file.path={tmp}/latin1.tsv",
        "--config.data.test_file.path={tmp}/good.tsv"],
     r"Text dataset file '.*latin1.tsv' is not valid UTF-8: line 3 has byte 0xe9"),
    # Models: safe loading (tfkd.model_files).
    ("tfkd.train", "HDF5 file as teacher/model.keras", TRAIN[:1] + ["--workdir={h5_workdir}"]
     + TRAIN[2:] + ["--config.stages=('distill',)"],
     r"Model '.*teacher/model.keras' is an HDF5 file, a legacy format .* set "
     r"--config.teacher.allow_legacy_formats=True"),
    ("tfkd.train", "HDF5 extra teacher", TRAIN + [
        "--config.distill.extra_teachers=('{lambda_h5}',)"],
     r"config.distill.extra_teachers\[0\]: Model '.*lambda.h5' is an HDF5 file"),
    ("tfkd.train", "HDF5 extra teacher, allowed, with a Lambda layer", TRAIN[:1]
     + ["--workdir={teacher_workdir}"] + TRAIN[2:] + [
         "--config.distill.extra_teachers=('{lambda_h5}',)", "--config.stages=('distill',)",
         "--config.teacher.allow_legacy_formats=True", "--config.distill.check_teacher=False"],
     r"Model '.*lambda.h5' holds a Lambda layer of Python code, which tfkd never runs \(safe "
     r"mode\). Fix: replace the Lambda layer"),
    ("tfkd.train", "corrupt .keras extra teacher", TRAIN + [
        "--config.distill.extra_teachers=('{corrupt_keras}',)"],
     r"extra_teachers\[0\]: Model file '.*corrupt.keras' \(300 bytes\) is not a Keras model"),
    ("tfkd.train", "corrupt teacher/model.keras in the workdir", TRAIN[:1]
     + ["--workdir={corrupt_workdir}"] + TRAIN[2:] + ["--config.stages=('distill',)"],
     r"Model file '.*teacher/model.keras' \(300 bytes\) is not a Keras model"),
    # .tflite files and the data they are evaluated on.
    ("tfkd.evaluate", "model file missing", ["--model={tmp}/nowhere.tflite"] + EVALUATE,
     r"--model='.*nowhere.tflite' is not a file: pass a .tflite path"),
    ("tfkd.evaluate", "empty .tflite", ["--model={empty_tflite}"] + EVALUATE,
     r"'.*empty.tflite' is empty \(0 bytes\)"),
    ("tfkd.evaluate", "truncated .tflite", ["--model={truncated_tflite}"] + EVALUATE,
     r"'.*truncated.tflite' cannot be loaded by LiteRT \(\d+ bytes; .*truncated or damaged"),
    ("tfkd.evaluate", "a .keras file given as .tflite", ["--model={teacher_keras}"] + EVALUATE,
     r"'.*model.keras' is not a TFLite model \(no 'TFL3' identifier"),
    ("tfkd.evaluate", "5-class model on 3-class data", ["--model={five_tflite}"] + EVALUATE,
     r"'.*five.tflite' outputs 5 classes, but the data has 3"),
    ("tfkd.evaluate", "no dataset named", ["--model={good_tflite}"],
     r"Give --data \(a dataset folder"),
    ("tfkd.evaluate", "batch size 0", ["--model={good_tflite}", "--batch_size=0"] + EVALUATE,
     r"flag --batch_size=0: .*Fix: correct the flag"),
    ("tfkd.evaluate", "validation split without val_size",
     ["--model={good_tflite}", "--split=val"] + EVALUATE, r"The val split is empty: set val_size"),
    ("tfkd.benchmark", "truncated .tflite", ["--model={truncated_tflite}", "--data={images}"],
     r"'.*truncated.tflite' cannot be loaded by LiteRT"),
    ("tflite.benchmark", "empty .tflite", ["--model={empty_tflite}"], r"'.*empty.tflite' is empty"),
    ("tflite.benchmark", "random bytes as .tflite", ["--model={corrupt_keras}"],
     r"'.*corrupt.keras' is not a TFLite model \(no 'TFL3' identifier in its first 8 bytes, 300 "),
    ("tflite.benchmark", "zero timed runs", ["--model={good_tflite}", "--runs=0"],
     r"flag --runs=0: .*Fix: correct the flag"),
    # Text tools and the benchmark scripts.
    ("tfkd.encode_text", "vocabulary missing", ["--vocab={tmp}/nowhere.txt", "a film"],
     r"Vocabulary file '.*nowhere.txt' does not exist"),
    ("tfkd.encode_text", "vocabulary not UTF-8", ["--vocab={tmp}/latin1.tsv", "a film"],
     r"Vocabulary file '.*latin1.tsv' is not valid UTF-8: line 3"),
    ("tfkd.encode_text", "max_length 0", ["--vocab={tmp}/good.tsv", "--max_length=0", "a film"],
     r"--max_length=0: give the model's input length"),
    ("tfkd.encode_text", "no --vocab", ["a film"],
     r"the following arguments are required: --vocab. Fix: see"),
    ("bench.edge", "HDF5 Keras model", ["--keras_model={lambda_h5}", "--data={images}",
                                        "--out={tmp}/edge"],
     r"Model '.*lambda.h5' is an HDF5 file"),
    ("bench.edge", "unknown converter mode", ["--keras_model={teacher_keras}", "--modes=int7",
                                              "--out={tmp}/edge"],
     r"Unknown --modes \['int7'\]"),
]


# --- The files the cases read ------------------------------------------------------------------

def _tiny_model(input_shape, classes, lambda_marker=None):
  import tf_keras  # pylint: disable=import-outside-toplevel  (only the test process builds them)
  inputs = tf_keras.Input(input_shape)
  x = tf_keras.layers.Rescaling(1 / 255.0)(inputs)
  if lambda_marker:  # Python code stored in the file: it must never run when tfkd loads it
    x = tf_keras.layers.Lambda(lambda t, m=lambda_marker: (open(m, "w").close(), t)[1])(x)
  x = tf_keras.layers.GlobalAveragePooling2D()(tf_keras.layers.Conv2D(4, 3, activation="relu")(x))
  return tf_keras.Model(inputs, tf_keras.layers.Dense(classes)(x))


def build_world(root: str) -> dict:
  """Writes every file the cases use under `root`; returns the names `CASES` format in."""
  import tfkd  # pylint: disable=import-outside-toplevel,unused-import  (Keras 2 first)
  from tests.conftest import write_image_folder  # pylint: disable=import-outside-toplevel
  from tflite import convert  # pylint: disable=import-outside-toplevel
  j = lambda *parts: os.path.join(root, *parts)
  w = {name: j(name) for name in ("existing", "one_class", "symlink", "corrupt", "empty_dataset",
                                   "h5_workdir", "teacher_workdir", "corrupt_workdir")}
  w.update(tmp=root, images=write_image_folder(j("images"), per_class=(6, 2)),
           lambda_h5=j("lambda.h5"), corrupt_keras=j("corrupt.keras"),
           teacher_keras=j("teacher_workdir", "teacher", "model.keras"))
  os.makedirs(w["existing"])
  with open(j("existing", "keep.txt"), "w") as f:
    f.write("results of an earlier run")
  with open(j("a_file"), "w") as f:
    f.write("not a folder")
  with open(j("broken_config.py"), "w") as f:
    f.write("def get_config(:\n")
  for split in ("train", "test"):
    shutil.copytree(j("images", split, "circle"), j("one_class", split, "only"))
    os.makedirs(j("empty_dataset", split))
  shutil.copytree(w["images"], w["symlink"])
  os.symlink(j("nowhere.jpg"), j("symlink", "train", "circle", "dangling.jpg"))
  shutil.copytree(w["images"], w["corrupt"])
  with open(j("corrupt", "train", "circle", "not_an_image.jpg"), "w") as f:
    f.write("plain text")
  with open(j("good.tsv"), "w", encoding="utf-8") as f:
    f.write("label\tsentence\n1\ta fine film\n0\ta dull film\n")
  with open(j("latin1.tsv"), "wb") as f:
    f.write(b"label\tsentence\n1\ta fine film\n0\tun film rat\xe9\n")
  with open(w["corrupt_keras"], "wb") as f:
    f.write(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
  _tiny_model((16, 16, 3), 3, lambda_marker=j(MARKER)).save(w["lambda_h5"])
  os.remove(j(MARKER))  # written while the model was built; a load must not write it again
  for workdir, source in (("h5_workdir", w["lambda_h5"]), ("corrupt_workdir", w["corrupt_keras"])):
    os.makedirs(j(workdir, "teacher"))
    shutil.copy(source, j(workdir, "teacher", "model.keras"))
  os.makedirs(j("teacher_workdir", "teacher"))
  _tiny_model((16, 16, 3), 3).save(w["teacher_keras"])
  for name, shape, classes in (("good", (12, 12, 3), 3), ("grey", (12, 12, 1), 3),
                               ("five", (12, 12, 3), 5)):
    w[f"{name}_tflite"] = j(f"{name}.tflite")
    with open(w[f"{name}_tflite"], "wb") as f:
      f.write(convert.convert(_tiny_model(shape, classes), "float32"))
  w["empty_tflite"], w["truncated_tflite"] = j("empty.tflite"), j("truncated.tflite")
  open(w["empty_tflite"], "wb").close()
  with open(w["good_tflite"], "rb") as f:
    good = f.read()
  with open(w["truncated_tflite"], "wb") as f:
    f.write(good[:len(good) // 2])
  return w


def snapshot(root: str) -> dict:
  """Path → bytes of every file under `root` (to show a failed run changed nothing)."""
  found = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      if os.path.isfile(path):
        with open(path, "rb") as f:
          found[os.path.relpath(path, root)] = f.read()
  return found


# --- Running the entry points ------------------------------------------------------------------

def drive(groups) -> list:
  """Runs each (module, [argv, ...]) in this process as `python -m module argv` would.

  Returns one {"code", "stderr"} per argv, in order.
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  from tfkd import cli  # pylint: disable=import-outside-toplevel
  results = []
  for module_name, argvs in groups:
    module = importlib.import_module(module_name)
    for definer in ("define_flags", "define_stream_flags"):
      if hasattr(module, definer):
        try:
          getattr(module, definer)()
        except flags.DuplicateFlagError:  # tflite.benchmark after tfkd.benchmark: the same flags
          pass
        setattr(module, definer, lambda: None)  # its run() defines them again otherwise
    runner = getattr(module, "run", None) or (lambda m=module: cli.run(m.main))
    for argv in argvs:
      flags.FLAGS.unparse_flags()
      for name in [n for n in flags.FLAGS if n.startswith("config.")]:
        delattr(flags.FLAGS, name)  # ml_collections defines one flag per override at each parse
      sys.argv = [module_name, *argv]
      stderr, code = io.StringIO(), 0
      with contextlib.redirect_stderr(stderr):
        try:
          runner()
        except SystemExit as e:
          code = e.code
        except BaseException:  # pylint: disable=broad-except  (a bug: keep its traceback)
          traceback.print_exc()
          code = "uncaught exception"
      results.append({"code": code, "stderr": stderr.getvalue()})
  return results


def run_groups(world: dict, cases) -> list:
  """Runs `cases` in one child process per group of entry points; one result per case."""
  argvs = [[arg.format(**world) for arg in case[2]] for case in cases]
  groups = []
  for case, argv in zip(cases, argvs):
    if not groups or groups[-1][0] != case[0]:
      groups.append((case[0], []))
    groups[-1][1].append(argv)
  child = subprocess.run(
      [sys.executable, "-m", "tests.test_bad_inputs", "drive", json.dumps(groups)],
      cwd=REPO, capture_output=True, text=True, timeout=900)
  lines = [l for l in child.stdout.splitlines() if l.startswith(RESULT_MARK)]
  assert child.returncode == 0 and lines, child.stderr[-3000:]
  return json.loads(lines[-1][len(RESULT_MARK):])


def problems(case, result) -> list:
  """What is wrong with how an entry point ended a case ([] when it is right)."""
  errors = [l for l in result["stderr"].splitlines() if l.startswith("ERROR:")]
  found = []
  if result["code"] != 2:
    found.append(f"exit code {result['code']!r}, not 2")
  if "Traceback" in result["stderr"]:
    found.append("a traceback")
  if len(errors) != 1:
    found.append(f"{len(errors)} ERROR lines")
  elif not re.search(case[3], errors[0]):
    found.append(f"message {errors[0]!r} does not match {case[3]!r}")
  return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
  return build_world(str(tmp_path_factory.mktemp("bad_inputs")))


def _writable(folder: str) -> bool:
  try:
    with open(os.path.join(folder, ".tfkd_probe"), "w"):
      pass
  except OSError:
    return False
  os.remove(os.path.join(folder, ".tfkd_probe"))
  return True


def check_cases(world, commands) -> list:
  """Runs the cases of `commands` in one child process and checks every one; returns them."""
  cases = [c for c in CASES if c[0] in commands
           and not ("--workdir=/sys/fs" in c[2] and _writable("/sys/fs"))]
  before = {name: snapshot(world[name])
            for name in ("existing", "h5_workdir", "teacher_workdir", "corrupt_workdir")}
  results = run_groups(world, cases)
  failed = {case[1]: problems(case, result) for case, result in zip(cases, results)}
  assert not {k: v for k, v in failed.items() if v}, {
      case[1]: (failed[case[1]], result["stderr"][-1500:])
      for case, result in zip(cases, results) if failed[case[1]]}
  for name, files in before.items():  # nothing lost: earlier results untouched, nothing added
    assert snapshot(world[name]) == files, name
  assert not os.path.exists(os.path.join(world["tmp"], MARKER))  # no Lambda code ran
  return cases


def test_training_refuses_bad_configs_files_and_models_with_one_line(world):
  assert len(check_cases(world, ("tfkd.train",))) >= 29  # 30 where /sys/fs is read-only
  assert os.listdir(world["existing"]) == ["keep.txt"]


def test_evaluate_refuses_bad_models_and_mismatched_data_with_one_line(world):
  assert len(check_cases(world, ("tfkd.evaluate",))) == 8


def test_benchmarks_refuse_bad_models_with_one_line(world):
  assert len(check_cases(world, ("tfkd.benchmark", "tflite.benchmark"))) == 4


def test_text_tool_and_bench_script_refuse_bad_inputs_with_one_line(world):
  assert len(check_cases(world, ("tfkd.encode_text", "bench.edge"))) == 6


def test_a_whole_training_process_ends_with_one_line_and_keeps_the_workdir(world):
  """The full stderr of a real `python -m tfkd.train` process: no traceback, one ERROR line."""
  before = snapshot(world["existing"])
  result = subprocess.run(
      [sys.executable, "-m", "tfkd.train", "--config=configs/cifar10_quick.py",
       f"--workdir={world['existing']}", f"--config.data.path={world['images']}",
       "--config.distill.temperature=0"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  # Besides TensorFlow's own start-up lines (C++ logging, before Python runs), one line.
  ours = [l for l in result.stderr.splitlines() if not TF_STARTUP_LINE.match(l)]
  assert ours == ["ERROR: config.distill.temperature=0.0 is not valid: use a number > 0 (in the "
                  "config file, or --config.distill.temperature=...)."], result.stderr
  assert snapshot(world["existing"]) == before


def test_tfkd_debug_shows_the_traceback(world):
  command = [sys.executable, "-m", "tflite.benchmark", f"--model={world['empty_tflite']}"]
  plain = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert plain.returncode == 2 and plain.stderr.count("\n") == 1, plain.stderr
  debug = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TFKD_DEBUG": "1"})
  assert debug.returncode == 1
  assert "Traceback" in debug.stderr and "TfliteError: " in debug.stderr
  assert "read_model_bytes" in debug.stderr  # where it was raised


def test_models_load_only_in_safe_mode(world, tmp_path):
  import tf_keras  # pylint: disable=import-outside-toplevel
  from tfkd import model_files  # pylint: disable=import-outside-toplevel
  from tfkd.errors import ModelFileError  # pylint: disable=import-outside-toplevel
  marker = os.path.join(world["tmp"], MARKER)
  disguised = str(tmp_path / "model.keras")  # an HDF5 file under a .keras name
  shutil.copy(world["lambda_h5"], disguised)
  with pytest.raises(ModelFileError, match="model.keras' is an HDF5 file.*re-save it as .keras"):
    model_files.load_model(disguised)
  with pytest.raises(ModelFileError, match="holds a Lambda layer of Python code"):
    model_files.load_model(disguised, allow_legacy_formats=True)
  keras_lambda = str(tmp_path / "lambda.keras")
  _tiny_model((16, 16, 3), 3, lambda_marker=marker).save(keras_lambda)
  os.remove(marker)
  with pytest.raises(ModelFileError, match="holds a Lambda layer of Python code"):
    model_files.load_model(keras_lambda)
  assert not os.path.exists(marker)  # neither format ran the Lambda's code
  plain = _tiny_model((16, 16, 3), 3)
  x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
  for name in ("plain.keras", "plain.h5"):
    plain.save(str(tmp_path / name))
    loaded = model_files.load_model(str(tmp_path / name), allow_legacy_formats=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5)
  shutil.copy(str(tmp_path / "plain.keras"), str(tmp_path / "plain.zip"))
  with pytest.raises(ModelFileError, match="a .keras archive under another name: rename it"):
    model_files.load_model(str(tmp_path / "plain.zip"))
  tf_keras.models.save_model(plain, str(tmp_path / "saved"), save_format="tf")
  with pytest.raises(ModelFileError, match="is a SavedModel folder, a legacy format"):
    model_files.load_model(str(tmp_path / "saved"))
  with pytest.raises(ModelFileError, match="nowhere.keras' does not exist"):
    model_files.load_model(str(tmp_path / "nowhere.keras"))


def test_tflite_readers_name_the_damaged_file(world):
  from tflite import graph, interpreter  # pylint: disable=import-outside-toplevel
  from tflite.errors import TfliteError  # pylint: disable=import-outside-toplevel
  for read in (graph.read, interpreter.load):
    with pytest.raises(TfliteError, match="empty.tflite' is empty"):
      read(world["empty_tflite"])
    with pytest.raises(TfliteError, match="corrupt.keras' is not a TFLite model"):
      read(world["corrupt_keras"])
  with pytest.raises(TfliteError, match="truncated.tflite' cannot be loaded by LiteRT"):
    interpreter.load(world["truncated_tflite"])
  with pytest.raises(TfliteError, match="The model bytes is empty"):
    graph.read(b"")
  assert graph.read(world["good_tflite"]).op_names()  # a whole file still reads


def test_config_checks_accept_every_case_config_and_know_the_library_names(world):
  # pylint: disable=import-outside-toplevel
  from configs import (cifar10_compress, cifar10_multitask, cifar10_quick, cifar10_resnet, defaults,
                       sst2_full, sst2_quick)
  from tfkd import config_checks, from_config, training  # pylint: disable=import-outside-toplevel
  leaves = set(_leaves(defaults.get_config()))
  assert set(config_checks.RULES) <= leaves  # every rule names a key tfkd has
  for module in (cifar10_quick, cifar10_resnet, cifar10_compress, cifar10_multitask, sst2_full,
                 sst2_quick):
    config = from_config.with_defaults(module.get_config())
    config.data.path = world["images"]
    table = os.path.join(world["tmp"], "good.tsv")
    config.data.train_file.path = config.data.test_file.path = table
    config_checks.validate(config)
  for name in config_checks.OPTIMIZERS:
    training.make_optimizer(name, 0.1)
  for name in config_checks.SCHEDULES:
    training.make_schedule(name, 0.1, total_steps=10)
  with pytest.raises(ValueError):
    training.make_optimizer("adam", 0.1)
  with pytest.raises(ValueError):
    training.make_schedule("step", 0.1, total_steps=10)


def _leaves(config, prefix=""):
  for key, value in config.items():
    if hasattr(value, "items") and key != "kwargs":
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


PROCESSES = (("tfkd.train",), ("tfkd.evaluate",), ("tfkd.benchmark", "tflite.benchmark"),
             ("tfkd.encode_text", "bench.edge"))


def table() -> str:
  """docs/errors.md's table: every case run as the tests run it, with what it printed."""
  import tempfile  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as root:
    world = build_world(root)
    rows = []
    for commands in PROCESSES:
      cases = [c for c in CASES if c[0] in commands]
      for case, result in zip(cases, run_groups(world, cases)):
        line = next((l for l in result["stderr"].splitlines() if l.startswith("ERROR:")), "")
        shown = lambda text: text.replace(root, "<tmp>").replace("|", "\\|")
        args = " ".join(a.format(**world) for a in case[2] if a not in TRAIN and a not in EVALUATE)
        rows.append(f"| `{case[0]}` | {case[1]} | `{shown(args)}` | {result['code']} | "
                    f"{shown(line)} |")
  return "\n".join(["| command | bad input | arguments (besides the usual) | exit | stderr |",
                    "|---|---|---|---|---|", *rows])


if __name__ == "__main__":
  if sys.argv[1] == "drive":
    print(RESULT_MARK + json.dumps(drive(json.loads(sys.argv[2]))))
  elif sys.argv[1] == "table":
    print(table())
