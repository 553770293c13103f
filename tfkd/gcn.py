"""Graph models: a GCN teacher on the whole graph, an MLP student on node features alone.

GCN (Kipf & Welling 2017): with A the adjacency and D̃ the degrees of A + I,

    Â = D̃^-1/2 (A + I) D̃^-1/2,     logits = Â · relu(Â X W₁) · W₂

with dropout on the input and the hidden layer, L2 on W₁. The adjacency is a
constant of the model, so the model takes the features of ALL N nodes as one
batch [N, F] and returns [N, classes]: it is trained full-batch with the loss
on the training nodes only (`fit_full_graph`), and it cannot run without the graph.

The MLP student sees one node's features [F] and returns its logits: ordinary
Dense layers, so it converts to int8 TFLite and runs on TFLite Micro, one node at
a time, without the graph (GLNN, Zhang et al. 2022; `glnn_loss_weights`).

Example:
  adjacency = normalized_adjacency(graph.edges, graph.num_nodes)
  teacher = build_gcn(adjacency, graph.features.shape[1], graph.num_classes)
  fit_full_graph(teacher, graph, epochs=200, patience=50, learning_rate=0.01)
  logits = teacher(graph.features, training=False)        # [N, classes]
"""

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from tfkd.distiller import Distiller


def normalized_adjacency(edges: np.ndarray, num_nodes: int) -> tf.SparseTensor:
  """Â = D̃^-1/2 (A + I) D̃^-1/2 as a sparse [N, N] float32 tensor.

  Args:
    edges: int [2, E], both directions of every undirected edge, no self-loops
      (as `tfkd.graph_data` gives them).
    num_nodes: N.

  Returns:
    A reordered `tf.SparseTensor`.
  """
  loops = np.arange(num_nodes)
  rows = np.concatenate([np.asarray(edges[0], np.int64), loops])
  cols = np.concatenate([np.asarray(edges[1], np.int64), loops])
  degree = np.bincount(rows, minlength=num_nodes).astype(np.float64)
  values = 1.0 / np.sqrt(degree[rows] * degree[cols])
  return tf.sparse.reorder(tf.SparseTensor(np.stack([rows, cols], 1), values.astype(np.float32),
                                           (num_nodes, num_nodes)))


class GraphConvolution(tf_keras.layers.Layer):
  """Â · X · W (+ b): one GCN layer over a fixed graph; the batch axis is the node axis.

  Args:
    units: output features per node.
    adjacency: Â, a sparse [N, N] tensor (`normalized_adjacency`).
    activation: Keras activation.
    kernel_regularizer: regularizer of W.
  """

  def __init__(self, units: int, adjacency: tf.SparseTensor, activation=None,
               kernel_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.adjacency = adjacency
    self.activation = tf_keras.activations.get(activation)
    self.kernel_regularizer = tf_keras.regularizers.get(kernel_regularizer)

  def build(self, input_shape):
    self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.units),
                                  initializer="glorot_uniform", regularizer=self.kernel_regularizer)
    self.bias = self.add_weight("bias", (self.units,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs):
    return self.activation(tf.sparse.sparse_dense_matmul(self.adjacency, inputs @ self.kernel)
                           + self.bias)


def build_gcn(adjacency: tf.SparseTensor, num_features: int, num_classes: int, hidden: int = 64,
              dropout: float = 0.5, weight_decay: float = 5e-4, name: str = "gcn") -> tf_keras.Model:
  """Kipf & Welling's two-layer GCN over the graph `adjacency` describes.

  Args:
    adjacency: Â for the N nodes (`normalized_adjacency`).
    num_features, num_classes: F and C.
    hidden: width of the hidden layer (16 in the paper; 64 here by default).
    dropout: dropout rate on the input and the hidden layer.
    weight_decay: L2 coefficient of the first layer's kernel (as in the paper).

  Returns:
    A functional model [N, F] → [N, C] logits; call it on all N nodes at once.
    It holds the graph as a constant and is saved with `save_weights`.
  """
  inputs = tf_keras.Input((num_features,), name="features")
  x = tf_keras.layers.Dropout(dropout)(inputs)
  x = GraphConvolution(hidden, adjacency, "relu", tf_keras.regularizers.L2(weight_decay),
                       name="gcn1")(x)
  x = tf_keras.layers.Dropout(dropout)(x)
  logits = GraphConvolution(num_classes, adjacency, name="gcn2")(x)
  return tf_keras.Model(inputs, logits, name=name)


def build_mlp(num_features: int, num_classes: int, hidden: Sequence[int] = (64,),
              dropout: float = 0.5, weight_decay: float = 5e-4, name: str = "mlp") -> tf_keras.Model:
  """An MLP on one node's features: Dense + ReLU (+ dropout) per hidden width, then logits.

  Args:
    num_features, num_classes: F and C.
    hidden: widths of the hidden layers.
    dropout: dropout rate after each hidden layer (inactive at inference and in the export).
    weight_decay: L2 coefficient of every kernel.

  Returns:
    A functional model [batch, F] → [batch, C] logits.
  """
  inputs = tf_keras.Input((num_features,), name="features")
  x = inputs
  for i, width in enumerate(hidden):
    x = tf_keras.layers.Dense(width, "relu", kernel_regularizer=tf_keras.regularizers.L2(
        weight_decay), name=f"dense{i + 1}")(x)
    x = tf_keras.layers.Dropout(dropout)(x)
  logits = tf_keras.layers.Dense(num_classes, kernel_regularizer=tf_keras.regularizers.L2(
      weight_decay), name="logits")(x)
  return tf_keras.Model(inputs, logits, name=name)


def mask_weights(num_nodes: int, nodes: np.ndarray) -> np.ndarray:
  """Per-node sample weights: N/k on the k given nodes, 0 elsewhere.

  Keras divides a weighted loss by the batch size (N); these weights make it the
  mean over the k nodes, so L2 keeps the weight it has in the paper.
  """
  weights = np.zeros(num_nodes, np.float32)
  weights[nodes] = num_nodes / len(nodes)
  return weights


def fit_full_graph(model: tf_keras.Model, features: np.ndarray, labels: np.ndarray,
                   train: np.ndarray, val: np.ndarray, epochs: int, patience: int,
                   learning_rate: float) -> int:
  """Trains a whole-graph model (the GCN) full-batch: loss on `train`, selected on `val`.

  Adam, cross-entropy over the training nodes; the weights kept are those of the
  epoch with the best validation accuracy (training stops `patience` epochs after it).

  Returns:
    The number of epochs run.
  """
  n = len(labels)
  model.compile(tf_keras.optimizers.Adam(learning_rate),
                tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=["accuracy"])
  stop = tf_keras.callbacks.EarlyStopping("val_accuracy", patience=patience, mode="max",
                                          restore_best_weights=True)
  history = model.fit(features, labels, sample_weight=mask_weights(n, train), batch_size=n,
                      epochs=epochs, shuffle=False, verbose=0, callbacks=[stop],
                      validation_data=(features, labels, mask_weights(n, val)),
                      validation_batch_size=n)
  return len(history.history["loss"])


def fit_nodes(model: tf_keras.Model, x, y, val_data, epochs: int, patience: int,
              learning_rate: float, batch_size: int) -> int:
  """Trains a per-node model (MLP or a `Distiller` around one): Adam, best validation accuracy kept.

  Args:
    model: a model taking node rows; compiled here (a Distiller: with its own losses).
    x, y: training inputs and labels (a Distiller: `(features, teacher_logits)` and
      labels with -1 for nodes that learn from the teacher alone).
    val_data: `(x, y)` of the validation nodes, as `fit`'s validation_data.
    batch_size: rows per step (0: all rows in one batch).

  Returns:
    The number of epochs run.
  """
  rows = len(y)
  model.compile(tf_keras.optimizers.Adam(learning_rate), metrics=["accuracy"],
                **({} if isinstance(model, Distiller) else {
                    "loss": tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)}))
  stop = tf_keras.callbacks.EarlyStopping("val_accuracy", patience=patience, mode="max",
                                          restore_best_weights=True)
  history = model.fit(x, y, batch_size=batch_size or rows, epochs=epochs, shuffle=True, verbose=0,
                      callbacks=[stop], validation_data=val_data,
                      validation_batch_size=len(val_data[1]))
  return len(history.history["loss"])


def glnn_loss_weights(lam: float, labelled_fraction: float) -> Tuple[float, float]:
  """The `Distiller`'s α that trains GLNN's loss, and the scale between the two.

  GLNN (Zhang et al. 2022) trains the MLP on

      L = λ · mean over labelled nodes of CE(y, s) + (1 − λ) · mean over ALL nodes of T²·KL(t_T ‖ s_T)

  The Distiller averages α·CE·[labelled] + (1 − α)·T²·KL over every node of a
  batch, so with a share r of labelled nodes it computes
  α·r·mean_L CE + (1 − α)·mean_V KD. Both are equal up to a factor c when
  α·r / (1 − α) = λ / (1 − λ):

      α = λ / (λ + r·(1 − λ)),     Distiller loss = c · L,  c = (1 − α) / (1 − λ)

  Adam's steps do not change with a constant factor of the loss; an L2 term
  keeps its weight against L when its coefficient is multiplied by c too.
  Exact on full batches; with smaller batches, in expectation.

  Args:
    lam: GLNN's λ in [0, 1): the weight of the hard labels.
    labelled_fraction: r, the share of the training rows that carry a label.

  Returns:
    (α, c).
  """
  if not 0.0 <= lam < 1.0:
    raise ValueError(f"lam must be in [0, 1), got {lam} (lam=1 would ignore the teacher).")
  if not 0.0 < labelled_fraction <= 1.0:
    raise ValueError(f"labelled_fraction must be in (0, 1], got {labelled_fraction}.")
  alpha = lam / (lam + labelled_fraction * (1.0 - lam))
  return alpha, (1.0 - alpha) / (1.0 - lam)
