"""GLNN worked example: a GCN teacher distilled into an int8 MLP on a contextual SBM graph.

  python -m tfkd.graph --config=configs/csbm_glnn.py --workdir=runs/glnn

The graph (written to workdir/graph.npz from a fixed seed): 2,500 nodes in 5 classes,
128 Gaussian features per node around class centres 2.5 noise standard deviations from
the origin, 8 neighbours per node on average, 80% of edges inside a class; 20 labelled
nodes per class, 500 validation and 1,000 test nodes, half of them held out (unseen in
training). Another graph: --config.graph.source=npz --config.graph.path=/data/cora.npz.
"""

from configs import defaults


def get_config():
  config = defaults.get_config()
  config.graph.source = "csbm"
  config.report.parity_samples = 500       # every held-out test node through TFLM and LiteRT
  return config
