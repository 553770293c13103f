"""Graph distillation: the .npz reader and its errors, the CSBM, Â against NumPy, GLNN's loss
through the Distiller against NumPy, and a small GLNN run whose int8 MLP runs on TFLite Micro."""

import os

import numpy as np
import pytest
import tensorflow as tf

from configs import csbm_glnn
from tfkd import gcn, graph, graph_data
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError, DatasetError
from tfkd.losses import LogitsDistillation
from tflite import files


def small_graph(seed=0, **kwargs):
  settings = dict(nodes=300, classes=3, features=8, average_degree=6.0, homophily=0.8,
                  feature_signal=1.0, train_per_class=10, val_size=60, test_size=100, seed=seed)
  settings.update(kwargs)
  return graph_data.csbm(**settings)


def test_save_and_load_round_trip(tmp_path):
  g = small_graph()
  loaded = graph_data.load_graph(graph_data.save_graph(str(tmp_path / "g.npz"), g))
  for name in ("features", "labels", "edges", "train", "val", "test"):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(g, name))
  assert loaded.class_names == g.class_names


def test_dense_layout_is_symmetrised_and_index_splits_are_read(tmp_path):
  path = str(tmp_path / "g.npz")
  # One directed edge, its duplicate, a self-loop; splits as index arrays, labels one-hot.
  np.savez(path, features=np.eye(4, dtype=np.float32), labels=np.eye(2)[[0, 1, 0, 1]],
           edges=np.array([[0, 0, 2], [1, 1, 2]]), train_index=[0, 1], val_index=[2],
           test_index=[3])
  g = graph_data.load_graph(path)
  np.testing.assert_array_equal(g.edges, [[0, 1], [1, 0]])
  np.testing.assert_array_equal(g.labels, [0, 1, 0, 1])
  np.testing.assert_array_equal(g.test, [3])


def test_gnn_benchmark_csr_layout_and_drawn_splits(tmp_path):
  g = small_graph(nodes=1700, features=4)    # room for Planetoid's 500 val and 1,000 test nodes
  n = g.num_nodes
  upper = g.edges[:, g.edges[0] < g.edges[1]]          # one direction: the reader symmetrises
  order = np.lexsort((upper[1], upper[0]))
  rows, cols = upper[0][order], upper[1][order]
  path = str(tmp_path / "csr.npz")
  np.savez(path, adj_data=np.ones(len(rows)), adj_indices=cols,
           adj_indptr=np.searchsorted(rows, np.arange(n + 1)), adj_shape=[n, n],
           attr_matrix=g.features, labels=g.labels)
  loaded = graph_data.load_graph(path, split_seed=3)
  np.testing.assert_array_equal(loaded.edges, g.edges)
  np.testing.assert_array_equal(loaded.features, g.features)
  assert (len(loaded.val), len(loaded.test)) == (500, 1000)
  assert np.all(np.bincount(loaded.labels[loaded.train]) == 20)


@pytest.mark.parametrize("arrays, match", [
    (dict(features=np.zeros((3, 2)), edges=np.zeros((2, 1), int)), "no 'labels'"),
    (dict(features=np.zeros((3, 2)), labels=[0, 1, 0]), "no 'edges'"),
    (dict(labels=[0, 1, 0]), "neither layout"),
    (dict(features=np.zeros((4, 2)), labels=[0, 1, 0], edges=[[0], [1]]), r"shape \(4, 2\).*3 labels"),
    (dict(features=np.zeros((3, 2)), labels=[0, 1, 0], edges=[[0], [3]]), r"ids 0..2"),
    (dict(features=np.zeros((3, 2)), labels=[0, 1, 0], edges=[[0, 1], [1, 2], [2, 0]]), "transpose"),
    (dict(features=np.zeros((3, 2)), labels=[0, 1, 0], edges=[[0], [1]], train_index=[0],
          val_index=[1], test_index=[0]), "share nodes"),
    (dict(features=np.zeros((3, 2)), labels=[0, 1, 0], edges=[[0], [1]], train_index=[0]),
     r"not \['val', 'test'\]"),
])
def test_bad_files_are_refused_with_the_fix(tmp_path, arrays, match):
  path = str(tmp_path / "bad.npz")
  np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
  with pytest.raises(DatasetError, match=match):
    graph_data.load_graph(path)
  with pytest.raises(DatasetError, match="does not exist"):
    graph_data.load_graph(str(tmp_path / "missing.npz"))


def test_csbm_is_reproducible_and_has_the_configured_degree_and_homophily():
  a, b, c = (graph_data.csbm(nodes=1500, classes=4, features=4, average_degree=10.0,
                             homophily=0.7, val_size=100, test_size=200, seed=s)
             for s in (5, 5, 6))
  np.testing.assert_array_equal(a.edges, b.edges)
  np.testing.assert_array_equal(a.features, b.features)
  assert a.edges.shape != c.edges.shape or not np.array_equal(a.edges, c.edges)
  assert abs(graph_data.edge_homophily(a.edges, a.labels) - 0.7) < 0.03
  assert abs(a.edges.shape[1] / a.num_nodes - 10.0) < 0.5     # both directions: mean degree
  assert np.array_equal(a.edges, graph_data.undirected_edges(a.edges, a.num_nodes))


def test_normalized_adjacency_matches_numpy():
  g = small_graph()
  n = g.num_nodes
  a = np.zeros((n, n))
  a[g.edges[0], g.edges[1]] = 1.0
  a += np.eye(n)
  d = 1.0 / np.sqrt(a.sum(1))
  expected = d[:, None] * a * d[None, :]
  got = tf.sparse.to_dense(gcn.normalized_adjacency(g.edges, n)).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def glnn_loss_numpy(student, teacher, labels, train, lam, temperature):
  """GLNN (Zhang et al. 2022): λ·mean_train CE + (1−λ)·mean_all T²·KL(teacher_T ‖ student_T)."""
  def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))
  ce = -log_softmax(student)[train, labels[train]].mean()
  t, s = log_softmax(teacher / temperature), log_softmax(student / temperature)
  kd = (np.exp(t) * (t - s)).sum(-1).mean() * temperature ** 2
  return lam * ce + (1 - lam) * kd


@pytest.mark.parametrize("lam, temperature", [(0.3, 2.0), (0.0, 1.0), (0.8, 4.0)])
def test_glnn_loss_through_the_distiller_matches_numpy(lam, temperature):
  rng = np.random.default_rng(0)
  n, f, c = 40, 5, 3
  x = rng.normal(size=(n, f)).astype(np.float32)
  teacher = rng.normal(size=(n, c)).astype(np.float32) * 3
  labels = rng.integers(0, c, n)
  train = np.arange(6)
  y = np.full(n, -1)
  y[train] = labels[train]
  student = gcn.build_mlp(f, c, hidden=(7,), dropout=0.0, weight_decay=0.0)
  alpha, scale = gcn.glnn_loss_weights(lam, len(train) / n)
  distiller = Distiller(None, student, LogitsDistillation(temperature), student_loss_weight=alpha)
  distiller.compile()
  loss = distiller.evaluate((x, teacher), y, batch_size=n, verbose=0, return_dict=True)["loss"]
  expected = glnn_loss_numpy(student.predict(x, verbose=0), teacher, labels, train, lam, temperature)
  np.testing.assert_allclose(loss, scale * expected, rtol=1e-5)


def test_held_out_nodes_lose_their_edges():
  g = small_graph()
  observed_test, held, edges = graph_data.hold_out(g, 0.5, seed=0)
  assert len(held) == 50 and not len(np.intersect1d(observed_test, held))
  assert not np.isin(edges, held).any() and edges.shape[1] < g.edges.shape[1]


@pytest.mark.slow
def test_glnn_run_gcn_beats_scratch_and_the_int8_mlp_runs_on_tflite_micro(tmp_path):
  config = csbm_glnn.get_config()
  # Weak features, an informative graph: the GCN must beat the feature-only MLP.
  config.graph.csbm.update(dict(nodes=600, classes=3, features=16, average_degree=10.0,
                                homophily=0.9, feature_signal=1.2, train_per_class=10,
                                val_size=100, test_size=300))
  config.graph.update(dict(epochs=80, patience=40, representative_size=100))
  config.graph.student.hidden = (16,)
  config.report.update(dict(latency_runs=5, latency_spread_s=0.0, warmup_runs=2, parity_samples=50))
  workdir = str(tmp_path)
  graph.run_graph(config, workdir)
  report = files.read_json(os.path.join(workdir, "report.json"))
  rows = {(r["step"], r["runs_as"]): r for r in report["rows"]}
  gcn_row, scratch = rows[("teacher", "Keras float32")], rows[("scratch", "Keras float32")]
  for nodes in ("observed", "held_out"):
    assert gcn_row[nodes] > scratch[nodes] + 0.1, nodes
  micro = report["edge"]["glnn"]["micro"]
  assert micro["runs"] and micro["arena_bytes"] > 0
  parity = micro["parity_reference_kernels"]
  assert parity["samples"] == 50 and parity["max_abs_diff"] <= 1 and parity["argmax_agreement"] == 1
  int8 = rows[("glnn", "LiteRT int8")]
  assert abs(int8["held_out"] - rows[("glnn", "Keras float32")]["held_out"]) <= 0.05
  assert os.path.getsize(os.path.join(workdir, "report.png")) > 0
  # Per-class metrics from the logits that gave each accuracy, on both test sets.
  for r in report["rows"]:
    for nodes, count in (("observed", "observed_test"), ("held_out", "held_out_test")):
      confusion = np.array(r["metrics"][nodes]["confusion"])
      assert confusion.shape == (3, 3) and confusion.sum() == report["graph"][count]
      assert np.trace(confusion) / confusion.sum() == pytest.approx(r[nodes])
  markdown = open(os.path.join(workdir, "report.md")).read()
  assert markdown.count("| class | precision | recall | F1 | support |") == len(report["rows"])
  assert os.path.getsize(os.path.join(workdir, "report_confusion.png")) > 0
  # A rerun skips every finished step: no result is rewritten.
  stamps = {s: os.path.getmtime(os.path.join(workdir, s, "result.json"))
            for s in ("teacher", "scratch", "glnn", "export")}
  graph.run_graph(config, workdir)
  assert stamps == {s: os.path.getmtime(os.path.join(workdir, s, "result.json")) for s in stamps}


def test_unknown_graph_source_is_a_config_error(tmp_path):
  config = csbm_glnn.get_config()
  config.graph.source = "cora"
  with pytest.raises(ConfigError, match="graph.source='cora'.*'csbm' or 'npz'"):
    graph.run_graph(config, str(tmp_path))
