"""Graphs for node classification: read from an `.npz`, or generated (contextual SBM).

One graph, one file. `load_graph` reads either of the two `.npz` layouts that
node-classification benchmarks ship in:

  dense layout (what `save_graph` and `csbm` write):
    features     float [N, F]   one row of features per node
    labels       int   [N]      class of every node, in [0, classes)
    edges        int   [2, E]   (source, target) pairs; directed or undirected (symmetrised)
    train_mask, val_mask, test_mask   bool [N], or train_index, val_index, test_index int [k]
    class_names  str   [classes]   optional

  CSR layout of the gnn-benchmark files (Shchur et al. 2018; the `cora.npz`,
  `citeseer.npz`, `pubmed.npz`, `amazon_*.npz` that GLNN and CPF read):
    adj_data, adj_indices, adj_indptr, adj_shape        the adjacency, CSR
    attr_data, attr_indices, attr_indptr, attr_shape    the features, CSR (or attr_matrix, dense)
    labels                                              int [N]

Edges are made undirected, duplicates and self-loops are dropped (a GCN adds its own
self-loops). Splits missing from a file are drawn as Planetoid's are (Yang et al. 2016):
20 labelled nodes per class, 500 validation and 1,000 test nodes, with a seed.

The Planetoid files themselves (Cora, CiteSeer, PubMed) cannot be downloaded in
tfkd's offline setting; bring them as `.npz` in either layout. The worked example is
instead a contextual stochastic block model (Deshpande et al. 2018), generated here
from a seed: `csbm(...)`.

Example:
  graph = csbm(nodes=2500, classes=5, features=128, average_degree=8, homophily=0.8,
               feature_signal=1.0, seed=0)
  save_graph("runs/glnn/graph.npz", graph)
  graph = load_graph("runs/glnn/graph.npz")
"""

import dataclasses
import io
from typing import Optional, Sequence

import numpy as np

from tfkd.errors import DatasetError
from tflite.files import write_atomic

SPLITS = ("train", "val", "test")
CSR_KEYS = ("adj_data", "adj_indices", "adj_indptr", "adj_shape")


@dataclasses.dataclass
class Graph:
  """A node-classification graph.

  Attributes:
    features: float32 [N, F].
    labels: int32 [N], in [0, classes).
    edges: int32 [2, E], undirected: both directions present, no duplicates or self-loops.
    train, val, test: int32 node indices of the three disjoint splits.
    class_names: one name per class.
  """
  features: np.ndarray
  labels: np.ndarray
  edges: np.ndarray
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  class_names: tuple

  @property
  def num_nodes(self) -> int:
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def undirected_edges(edges: np.ndarray, num_nodes: int) -> np.ndarray:
  """[2, E] edges → both directions of every edge, once each, without self-loops, sorted."""
  edges = np.asarray(edges, np.int64)
  pairs = np.concatenate([edges, edges[::-1]], axis=1)
  pairs = pairs[:, pairs[0] != pairs[1]]
  keys = np.unique(pairs[0] * num_nodes + pairs[1])
  return np.stack([keys // num_nodes, keys % num_nodes]).astype(np.int32)


def edge_homophily(edges: np.ndarray, labels: np.ndarray) -> float:
  """Share of edges joining two nodes of the same class (Zhu et al. 2020's edge homophily)."""
  return float(np.mean(labels[edges[0]] == labels[edges[1]])) if edges.shape[1] else float("nan")


def planetoid_split(labels: np.ndarray, train_per_class: int = 20, val_size: int = 500,
                    test_size: int = 1000, seed: int = 0):
  """Planetoid-style splits: `train_per_class` nodes of every class, then val and test nodes.

  Returns:
    (train, val, test) sorted int32 index arrays, disjoint.
  """
  labels = np.asarray(labels)
  rng = np.random.default_rng(seed)
  train = []
  for c in range(int(labels.max()) + 1):
    members = np.flatnonzero(labels == c)
    if len(members) < train_per_class:
      raise DatasetError(f"Class {c} has {len(members)} nodes, fewer than train_per_class="
                         f"{train_per_class}: lower train_per_class or use a larger graph.")
    train.append(rng.choice(members, train_per_class, replace=False))
  train = np.concatenate(train)
  rest = rng.permutation(np.setdiff1d(np.arange(len(labels)), train))
  if len(rest) < val_size + test_size:
    raise DatasetError(f"{len(rest)} nodes remain after the training nodes, fewer than val_size + "
                       f"test_size = {val_size + test_size}: lower them or use a larger graph.")
  val, test = rest[:val_size], rest[val_size:val_size + test_size]
  return tuple(np.sort(s).astype(np.int32) for s in (train, val, test))


def _csr_dense(data, indices, indptr, shape) -> np.ndarray:
  dense = np.zeros(tuple(int(s) for s in shape), np.float32)
  rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
  dense[rows, indices] = data
  return dense


def _csr_edges(indices, indptr) -> np.ndarray:
  rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
  return np.stack([rows, np.asarray(indices)])


def _split_indices(arrays: dict, name: str, num_nodes: int, path: str) -> Optional[np.ndarray]:
  """The nodes of split `name` from `<name>_mask` or `<name>_index`, or None if absent."""
  if f"{name}_mask" in arrays:
    mask = np.asarray(arrays[f"{name}_mask"])
    if mask.shape != (num_nodes,):
      raise DatasetError(f"{path}: {name}_mask has shape {mask.shape}, not ({num_nodes},) (one "
                         "entry per node): write a boolean mask over all nodes.")
    return np.flatnonzero(mask.astype(bool)).astype(np.int32)
  if f"{name}_index" in arrays:
    index = np.asarray(arrays[f"{name}_index"]).reshape(-1)
    if not np.issubdtype(index.dtype, np.integer) or (len(index) and (
        index.min() < 0 or index.max() >= num_nodes)):
      raise DatasetError(f"{path}: {name}_index must hold integer node ids in [0, {num_nodes}): "
                         "fix the file's split arrays.")
    return np.unique(index).astype(np.int32)
  return None


def _read_features_and_edges(arrays: dict, path: str):
  if "features" in arrays:
    if "edges" not in arrays:
      raise DatasetError(f"{path} has 'features' but no 'edges': add an int array [2, E] of "
                         "(source, target) node pairs.")
    return np.asarray(arrays["features"], np.float32), np.asarray(arrays["edges"])
  if all(k in arrays for k in CSR_KEYS):
    if "attr_matrix" in arrays:
      features = np.asarray(arrays["attr_matrix"], np.float32)
    elif "attr_data" in arrays:
      features = _csr_dense(arrays["attr_data"], arrays["attr_indices"], arrays["attr_indptr"],
                            arrays["attr_shape"])
    else:
      raise DatasetError(f"{path} has an adjacency (adj_*) but no node features: add attr_data/"
                         "attr_indices/attr_indptr/attr_shape (CSR) or attr_matrix (dense).")
    return features, _csr_edges(arrays["adj_indices"], arrays["adj_indptr"])
  raise DatasetError(
      f"{path} holds {sorted(arrays)}, neither layout tfkd reads: write 'features' [N, F], "
      "'labels' [N], 'edges' [2, E] (+ train/val/test masks), or the gnn-benchmark CSR keys "
      f"{list(CSR_KEYS)} + attr_* + labels (see tfkd/graph_data.py).")


def load_graph(path: str, split_seed: int = 0) -> Graph:
  """Reads and checks a graph `.npz` in the dense or the gnn-benchmark CSR layout (module doc).

  Args:
    path: the `.npz` file.
    split_seed: seed of the Planetoid-style splits drawn when the file has none.

  Returns:
    A `Graph`.

  Raises:
    DatasetError: the file is missing or unreadable, a key is missing, shapes disagree,
      an edge names a node that does not exist, labels are out of range or splits overlap.
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except FileNotFoundError as e:
    raise DatasetError(f"Graph file {path!r} does not exist: pass the path of a graph .npz, or "
                       "generate one (config: graph.source='csbm').") from e
  except (OSError, ValueError) as e:
    raise DatasetError(f"Graph file {path!r} is not a readable .npz without pickled objects ({e}): "
                       "save it with numpy.savez of plain arrays.") from e
  if "labels" not in arrays:
    raise DatasetError(f"{path} has no 'labels': add an int array [N] with every node's class.")
  features, edges = _read_features_and_edges(arrays, path)
  labels = np.asarray(arrays["labels"])
  if labels.ndim == 2:  # one-hot rows, as Planetoid's own y arrays are
    labels = np.argmax(labels, axis=-1)
  n = len(labels)
  if features.ndim != 2 or len(features) != n:
    raise DatasetError(f"{path}: features have shape {features.shape} but there are {n} labels: "
                       "write one feature row [N, F] per labelled node.")
  if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
    raise DatasetError(f"{path}: labels must be integer classes >= 0, got dtype {labels.dtype} "
                       f"and minimum {labels.min()}: encode classes as 0..C-1.")
  if edges.ndim != 2 or edges.shape[0] != 2:
    raise DatasetError(f"{path}: edges have shape {edges.shape}, not [2, E]"
                       + (" (it looks like [E, 2]: transpose it)" if edges.ndim == 2
                          and edges.shape[1] == 2 else "") + ".")
  if not np.issubdtype(edges.dtype, np.integer):
    raise DatasetError(f"{path}: edges have dtype {edges.dtype}: store node ids as integers.")
  if edges.size and (edges.min() < 0 or edges.max() >= n):
    raise DatasetError(f"{path}: edges name node ids from {edges.min()} to {edges.max()} but the "
                       f"graph has {n} nodes (ids 0..{n - 1}): fix the edge list or the node count.")
  if not np.all(np.isfinite(features)):
    raise DatasetError(f"{path}: features hold NaN or infinite values: clean them first.")
  splits = [_split_indices(arrays, s, n, path) for s in SPLITS]
  if all(s is None for s in splits):
    splits = planetoid_split(labels, seed=split_seed)
  elif any(s is None for s in splits):
    missing = [name for name, s in zip(SPLITS, splits) if s is None]
    raise DatasetError(f"{path} has some splits but not {missing}: give all of train/val/test "
                       "(as _mask or _index arrays) or none (Planetoid-style splits are drawn).")
  train, val, test = splits
  if len(np.intersect1d(train, test)) or len(np.intersect1d(train, val)) or len(
      np.intersect1d(val, test)):
    raise DatasetError(f"{path}: the train, val and test splits share nodes: make them disjoint.")
  if not len(train) or not len(test):
    raise DatasetError(f"{path}: the train or test split is empty: mark nodes in both.")
  classes = int(labels.max()) + 1
  names = tuple(str(c) for c in arrays["class_names"]) if "class_names" in arrays else tuple(
      str(c) for c in range(classes))
  if len(names) < classes:
    raise DatasetError(f"{path}: {len(names)} class_names for labels up to {classes - 1}: "
                       "give one name per class.")
  return Graph(features=features, labels=labels.astype(np.int32),
               edges=undirected_edges(edges, n), train=train, val=val, test=test,
               class_names=names)


def save_graph(path: str, graph: Graph) -> str:
  """Writes `graph` in the dense layout (`load_graph` reads it back), atomically.

  Returns:
    `path`.
  """
  buffer = io.BytesIO()
  masks = {}
  for name in SPLITS:
    mask = np.zeros(graph.num_nodes, bool)
    mask[getattr(graph, name)] = True
    masks[f"{name}_mask"] = mask
  np.savez_compressed(buffer, features=graph.features.astype(np.float32),
                      labels=graph.labels.astype(np.int32), edges=graph.edges.astype(np.int32),
                      class_names=np.asarray(graph.class_names), **masks)
  return write_atomic(path, buffer.getvalue())


def sbm_probabilities(class_sizes: Sequence[int], average_degree: float, homophily: float):
  """(p_in, p_out) of an SBM whose expected degree and edge homophily are the given ones.

  Expected edges inside classes m_in = p_in · Σ_k n_k(n_k − 1)/2, between them
  m_out = p_out · Σ_{k<l} n_k n_l; m_in + m_out = N · d / 2 and m_in / (m_in + m_out) = h.
  """
  sizes = np.asarray(class_sizes, np.float64)
  n = sizes.sum()
  pairs_in = float(np.sum(sizes * (sizes - 1) / 2))
  pairs_out = float((n * n - np.sum(sizes * sizes)) / 2)
  edges = n * average_degree / 2
  p_in, p_out = homophily * edges / pairs_in, (1 - homophily) * edges / pairs_out
  if not (0 <= p_out <= 1 and 0 <= p_in <= 1):
    raise ValueError(f"average_degree={average_degree} with homophily={homophily} needs edge "
                     f"probabilities p_in={p_in:.3g}, p_out={p_out:.3g} outside [0, 1]: lower the degree.")
  return p_in, p_out


def _sample_pairs(rng, rows: np.ndarray, cols: np.ndarray, p: float, same: bool) -> np.ndarray:
  """Each pair (rows[i], cols[j]) (i < j when `same`) kept independently with probability p."""
  total = len(rows) * (len(rows) - 1) // 2 if same else len(rows) * len(cols)
  count = rng.binomial(total, p)
  if count == 0:
    return np.zeros((2, 0), np.int64)
  # Draw `count` distinct pairs uniformly: ordered draws, mapped to canonical pairs, deduplicated.
  chosen = np.zeros(0, np.int64)
  while len(chosen) < count:
    i = rng.integers(0, len(rows), 2 * count)
    j = rng.integers(0, len(cols), 2 * count)
    if same:
      i, j = np.minimum(i, j)[i != j], np.maximum(i, j)[i != j]
    keys = np.unique(np.concatenate([chosen, i * len(cols) + j]))
    chosen = rng.permutation(keys)[:count] if len(keys) >= count else keys
  return np.stack([rows[chosen // len(cols)], cols[chosen % len(cols)]])


def csbm(nodes: int = 2500, classes: int = 5, features: int = 128, average_degree: float = 8.0,
         homophily: float = 0.8, feature_signal: float = 1.0, train_per_class: int = 20,
         val_size: int = 500, test_size: int = 1000, seed: int = 0) -> Graph:
  """A contextual stochastic block model graph (Deshpande et al. 2018), for `classes` classes.

  Every node draws a class uniformly; its features are its class centre plus
  N(0, I_F) noise, and each pair of nodes is joined independently with
  probability p_in (same class) or p_out (different classes), chosen so the
  expected degree is `average_degree` and the expected edge homophily `homophily`.
  Class centres are random directions of length `feature_signal`: the smaller it
  is, the less a node's own features tell about its class and the more its
  neighbourhood does.

  Args:
    nodes, classes, features: N, C, F.
    average_degree: expected number of neighbours of a node.
    homophily: expected share of edges inside a class (1/C: the graph tells nothing).
    feature_signal: distance of each class centre from the origin, in noise standard deviations.
    train_per_class, val_size, test_size: the Planetoid-style splits (`planetoid_split`).
    seed: the one seed of classes, features, edges and splits.

  Returns:
    A `Graph`.
  """
  if classes < 2 or nodes < classes or features < 1:
    raise ValueError(f"csbm needs classes >= 2, nodes >= classes and features >= 1, got "
                     f"nodes={nodes}, classes={classes}, features={features}.")
  if not 0 <= homophily <= 1 or average_degree <= 0 or feature_signal < 0:
    raise ValueError(f"csbm needs 0 <= homophily <= 1, average_degree > 0 and feature_signal >= 0, "
                     f"got {homophily}, {average_degree}, {feature_signal}.")
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, nodes)
  centres = rng.normal(size=(classes, features))
  centres *= feature_signal / np.linalg.norm(centres, axis=1, keepdims=True)
  x = (centres[labels] + rng.normal(size=(nodes, features))).astype(np.float32)
  members = [np.flatnonzero(labels == c) for c in range(classes)]
  p_in, p_out = sbm_probabilities([len(m) for m in members], average_degree, homophily)
  blocks = [_sample_pairs(rng, members[k], members[l], p_in if k == l else p_out, k == l)
            for k in range(classes) for l in range(k, classes)]
  edges = undirected_edges(np.concatenate(blocks, axis=1), nodes)
  train, val, test = planetoid_split(labels, train_per_class, val_size, test_size, seed)
  return Graph(features=x, labels=labels.astype(np.int32), edges=edges, train=train, val=val,
               test=test, class_names=tuple(f"block{c}" for c in range(classes)))


def nearest_centre_accuracy(graph: Graph, nodes: np.ndarray) -> float:
  """Accuracy of the nearest class-mean rule on `nodes`, class means from ALL labels.

  For a CSBM (isotropic noise, near-equal priors) this approaches the Bayes-optimal
  accuracy from a node's features alone: a ceiling for any graph-free model,
  which no model trained on 20 labels per class can be expected to reach.
  """
  means = np.stack([graph.features[graph.labels == c].mean(0) for c in range(graph.num_classes)])
  distances = ((graph.features[nodes, None, :] - means[None]) ** 2).sum(-1)
  return float(np.mean(np.argmax(-distances, -1) == graph.labels[nodes]))


def hold_out(graph: Graph, share: float, seed: int = 0):
  """Splits the test nodes into observed ones and held-out (inductive) ones, GLNN's setting.

  Held-out nodes stand for nodes that arrive after training: no model sees their
  features or edges while training; at test time the GCN reads them with the whole
  graph, the MLP reads their features alone.

  Args:
    graph: the graph.
    share: share of the test nodes held out, in [0, 1).
    seed: which ones.

  Returns:
    (observed_test, held_out, observed_edges): sorted int32 node ids, and the edges
    between observed nodes only.
  """
  if not 0.0 <= share < 1.0:
    raise ValueError(f"held-out share must be in [0, 1), got {share}.")
  rng = np.random.default_rng(seed)
  held = np.sort(rng.permutation(graph.test)[:int(round(share * len(graph.test)))]).astype(np.int32)
  observed_test = np.setdiff1d(graph.test, held).astype(np.int32)
  unseen = np.zeros(graph.num_nodes, bool)
  unseen[held] = True
  edges = graph.edges[:, ~(unseen[graph.edges[0]] | unseen[graph.edges[1]])]
  return observed_test, held, edges
