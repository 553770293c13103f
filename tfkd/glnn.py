"""GLNN runs (Zhang et al. 2022): a GCN teacher distilled into an MLP that needs no graph.

The steps of `python -m tfkd.graph`, each a function of a `GraphRun` that returns
early when its result file exists (a rerun skips finished steps):

  teacher   GCN on the observed graph, full batch; its logits for every observed node
            (teacher/logits.npy) are the cached teacher of the GLNN step.
  scratch   the MLP on the labelled training nodes alone.
  glnn      the same MLP in a `Distiller` without a teacher model: batches
            ((features, teacher logits), label or -1) over all observed nodes,
            α and the L2 scale from `gcn.glnn_loss_weights` so the loss is GLNN's.
  export    both MLPs to float32 and int8 `.tflite`, calibrated on observed non-test nodes.

Accuracy is measured on two sets of test nodes (`graph_data.hold_out`): observed ones,
whose features (and teacher soft labels) the GLNN student trained on (GLNN's
transductive setting), and held-out ones no model saw in training (its inductive
setting: new nodes on a device, where the MLP reads their features alone). The same
logits give each set's per-class precision, recall, F1 and confusion matrix (`GraphRun.metrics`).

Example:
  run = GraphRun(graph, workdir="runs/glnn", settings=settings, seed=0)
  for step in (step_teacher, step_scratch, step_glnn, step_export):
    step(run)
"""

import dataclasses
import os
import time

import numpy as np
import tf_keras

from tfkd import gcn, graph_data, teacher_cache, training
from tfkd.distiller import Distiller
from tfkd.losses import LogitsDistillation
from tflite import convert, files, interpreter, metrics

EXPORT_MODES = ("float32", "int8")
MLPS = ("scratch", "glnn")


@dataclasses.dataclass
class Settings:
  """What the steps need from `config.graph` (see configs/defaults.py)."""
  held_out: float
  teacher_hidden: int
  teacher_dropout: float
  teacher_weight_decay: float
  student_hidden: tuple
  student_dropout: float
  student_weight_decay: float
  epochs: int
  patience: int
  learning_rate: float
  batch_size: int
  lam: float
  temperature: float
  representative_size: int


class GraphRun:
  """A graph, its observed/held-out split, a workdir and the settings of one GLNN run.

  Args:
    graph: the `graph_data.Graph`.
    workdir: where every step writes.
    settings: `Settings`.
    seed: weights, dropout and shuffling (each step starts from it). The held-out
      nodes are drawn with a fixed seed, so runs of every seed share them.
  """

  def __init__(self, graph: graph_data.Graph, workdir: str, settings: Settings, seed: int = 0):
    self.graph, self.workdir, self.settings, self.seed = graph, workdir, settings, seed
    self.observed_test, self.held_out, self.observed_edges = graph_data.hold_out(
        graph, settings.held_out, seed=0)
    unseen = np.zeros(graph.num_nodes, bool)
    unseen[self.held_out] = True
    self.observed = np.flatnonzero(~unseen).astype(np.int32)

  def path(self, *parts: str) -> str:
    return os.path.join(self.workdir, *parts)

  def done(self, step: str) -> bool:
    return os.path.exists(self.path(step, "result.json"))

  def result(self, step: str) -> dict:
    return files.read_json(self.path(step, "result.json"))

  def test_sets(self) -> dict:
    """{'observed': nodes, 'held_out': nodes}, the two test sets (held_out may be empty)."""
    return {"observed": self.observed_test, "held_out": self.held_out}

  def accuracies(self, logits: np.ndarray) -> dict:
    """Test accuracy of [N, classes] logits on each test set (None when a set is empty)."""
    labels = self.graph.labels
    return {name: (float(np.mean(np.argmax(logits[nodes], -1) == labels[nodes]))
                   if len(nodes) else None) for name, nodes in self.test_sets().items()}

  def metrics(self, logits: np.ndarray) -> dict:
    """`tflite.metrics.classification_metrics` of [N, classes] logits on each test set (None
    when a set is empty): per-class precision, recall, F1 and the confusion matrix."""
    labels = self.graph.labels
    return {name: (metrics.score_metrics(labels[nodes], logits[nodes]) if len(nodes) else None)
            for name, nodes in self.test_sets().items()}

  def calibration_nodes(self) -> np.ndarray:
    """Observed non-test nodes, shuffled, `representative_size` of them (int8 calibration)."""
    nodes = np.setdiff1d(self.observed, self.graph.test)
    return np.random.default_rng(0).permutation(nodes)[:self.settings.representative_size]

  def mlp(self, name: str, weight_decay: float) -> tf_keras.Model:
    s = self.settings
    return gcn.build_mlp(self.graph.features.shape[1], self.graph.num_classes, s.student_hidden,
                         s.student_dropout, weight_decay, name=name)


def _write_result(run: GraphRun, step: str, payload: dict) -> None:
  files.write_json(run.path(step, "result.json"), payload)


def _gcn(run: GraphRun, edges: np.ndarray) -> tf_keras.Model:
  s, g = run.settings, run.graph
  return gcn.build_gcn(gcn.normalized_adjacency(edges, g.num_nodes), g.features.shape[1],
                       g.num_classes, s.teacher_hidden, s.teacher_dropout, s.teacher_weight_decay)


def step_teacher(run: GraphRun) -> None:
  """Trains the GCN on the observed graph; writes its weights, logits and accuracy."""
  if run.done("teacher"):
    return
  s, g = run.settings, run.graph
  tf_keras.utils.set_random_seed(run.seed)
  start = time.perf_counter()
  model = _gcn(run, run.observed_edges)   # held-out nodes: no edges, features never in the loss
  epochs = gcn.fit_full_graph(model, g.features, g.labels, g.train, g.val, s.epochs, s.patience,
                              s.learning_rate)
  seconds = time.perf_counter() - start
  observed_logits = model(g.features, training=False).numpy()
  # New nodes join the graph at test time: the same weights over every edge.
  full = _gcn(run, g.edges)
  full.set_weights(model.get_weights())
  full_logits = full(g.features, training=False).numpy()
  logits = observed_logits.copy()
  logits[run.held_out] = full_logits[run.held_out]
  os.makedirs(run.path("teacher"), exist_ok=True)
  tmp = run.path("teacher", "gcn.partial.weights.h5")
  model.save_weights(tmp)
  os.replace(tmp, run.path("teacher", "gcn.weights.h5"))
  # The GLNN student may learn from observed nodes only; held-out rows are never read.
  teacher_cache.save_teacher_logits(run.path("teacher", "logits.npy"), observed_logits)
  _write_result(run, "teacher", {"epochs": epochs, "train_seconds": seconds,
                                 "parameters": int(model.count_params()),
                                 "accuracy": run.accuracies(logits),
                                 "metrics": run.metrics(logits)})


def step_scratch(run: GraphRun) -> None:
  """Trains the MLP on the labelled training nodes alone."""
  if run.done("scratch"):
    return
  s, g = run.settings, run.graph
  tf_keras.utils.set_random_seed(run.seed)
  model = run.mlp("mlp_scratch", s.student_weight_decay)
  start = time.perf_counter()
  epochs = gcn.fit_nodes(model, g.features[g.train], g.labels[g.train],
                         (g.features[g.val], g.labels[g.val]), s.epochs, s.patience,
                         s.learning_rate, s.batch_size)
  _finish_mlp(run, "scratch", model, epochs, time.perf_counter() - start)


def step_glnn(run: GraphRun) -> None:
  """Distils the GCN's logits on every observed node into the MLP (GLNN)."""
  if run.done("glnn"):
    return
  s, g = run.settings, run.graph
  logits = np.load(run.path("teacher", "logits.npy"))
  nodes = run.observed
  labels = np.full(g.num_nodes, -1, np.int32)
  labels[g.train] = g.labels[g.train]       # val and test labels stay hidden
  alpha, scale = gcn.glnn_loss_weights(s.lam, len(g.train) / len(nodes))
  tf_keras.utils.set_random_seed(run.seed)
  student = run.mlp("mlp_glnn", s.student_weight_decay * scale)
  distiller = Distiller(None, student, LogitsDistillation(s.temperature), student_loss_weight=alpha)
  start = time.perf_counter()
  epochs = gcn.fit_nodes(distiller, (g.features[nodes], logits[nodes]), labels[nodes],
                         ((g.features[g.val], logits[g.val]), g.labels[g.val]), s.epochs,
                         s.patience, s.learning_rate, s.batch_size)
  _finish_mlp(run, "glnn", student, epochs, time.perf_counter() - start,
              {"alpha": alpha, "loss_scale": scale,
               "teacher_agreement": teacher_cache.label_agreement(logits[g.train], g.labels[g.train])})


def _finish_mlp(run: GraphRun, step: str, model, epochs: int, seconds: float, extra=None) -> None:
  training.save_model_atomic(model, run.path(step, "model.keras"))
  logits = model.predict(run.graph.features, batch_size=4096, verbose=0)
  _write_result(run, step, {"epochs": epochs, "train_seconds": seconds,
                            "parameters": int(model.count_params()),
                            "accuracy": run.accuracies(logits),
                            "metrics": run.metrics(logits), **(extra or {})})


def tflite_path(run: GraphRun, step: str, mode: str) -> str:
  return run.path("export", f"{step}_{mode}.tflite")


def step_export(run: GraphRun) -> None:
  """Both MLPs to float32 and int8 `.tflite`, each with its LiteRT test accuracy."""
  if run.done("export"):
    return
  g = run.graph
  calibration = g.features[run.calibration_nodes()]
  accuracy, measured = {}, {}
  for step in MLPS:
    model = tf_keras.models.load_model(run.path(step, "model.keras"), compile=False)
    for mode in EXPORT_MODES:
      path = tflite_path(run, step, mode)
      files.write_atomic(path, convert.convert(model, mode, calibration))
      logits = interpreter.predict(path, g.features, batch_size=4096)
      accuracy[f"{step}_{mode}"] = run.accuracies(logits)
      measured[f"{step}_{mode}"] = run.metrics(logits)
  _write_result(run, "export", {"accuracy": accuracy, "metrics": measured,
                                "calibration_nodes": len(calibration)})
