r"""GLNN on the CSBM worked example: GCN, MLP from scratch and distilled MLP, over seeds.

  .venv/bin/python -m bench.glnn --out=runs/bench_glnn [--seeds=0,1]

One `python -m tfkd.graph` run (configs/csbm_glnn.py) per training seed, on the same
generated graph (CSBM seed 0: 2,500 nodes, 5 classes, 128 features with class centres
2.5 noise standard deviations from the origin, mean degree 8, edge homophily 0.8;
20 labelled nodes per class, 500 validation nodes, 1,000 test nodes of which half are
held out of training). Each run lives in `--out/seed<k>` and resumes there.

For every model: test accuracy on the observed and on the held-out test nodes (Keras;
the MLPs also as float32 and int8 on LiteRT), and for the int8 MLPs the TFLite Micro
arena, flash and parity with LiteRT on the held-out nodes. The table gives each seed
and the mean; `glnn.{md,json}` in `--out`.
"""

import os

import numpy as np
from absl import flags

from bench import common
from configs import csbm_glnn
from tfkd import cli, graph
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_glnn", "Output folder.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1"], "Training seeds (weights, dropout, shuffling).")

ROWS = (("teacher", "Keras float32"), ("scratch", "Keras float32"), ("scratch", "LiteRT int8"),
        ("glnn", "Keras float32"), ("glnn", "LiteRT float32"), ("glnn", "LiteRT int8"))


def run_seed(seed: int) -> dict:
  config = csbm_glnn.get_config()
  config.seed = seed
  workdir = os.path.join(_OUT.value, f"seed{seed}")
  config.graph.path = os.path.join(_OUT.value, "graph.npz")   # one graph for every seed
  graph.run_graph(config, workdir)
  return files.read_json(os.path.join(workdir, "report.json"))


def _pct(values) -> str:
  return " / ".join(f"{v * 100:.1f}" for v in values) + f" (mean {np.mean(values) * 100:.1f})"


def table(reports) -> str:
  seeds = " / ".join(str(s) for s in _SEEDS.value)
  lines = [f"| model | runs as | observed test nodes, % (seeds {seeds}) | held-out test nodes, % "
           f"(seeds {seeds}) | TFLM arena B | flash B | TFLM = LiteRT top-1 |",
           "|---|---|---:|---:|---:|---:|---|"]
  for step, runs_as in ROWS:
    rows = [next(r for r in rep["rows"] if (r["step"], r["runs_as"]) == (step, runs_as))
            for rep in reports]
    arena = flash = parity = "—"
    if runs_as == "LiteRT int8":
      micro = [rep["edge"][step]["micro"] for rep in reports]
      arena = " / ".join(f"{m['arena_bytes']:,}" for m in micro)
      flash = " / ".join(f"{m['flash_bytes']:,}" for m in micro)
      parity = " / ".join(f"{m['parity_reference_kernels']['argmax_agreement'] * 100:.0f}% "
                          f"(max {m['parity_reference_kernels']['max_abs_diff']:g} LSB)" for m in micro)
    lines.append(f"| {rows[0]['model']} | {runs_as} | {_pct([r['observed'] for r in rows])} | "
                 f"{_pct([r['held_out'] for r in rows])} | {arena} | {flash} | {parity} |")
  g = reports[0]["graph"]
  lines += ["", f"Graph: {g['nodes']:,} nodes, {g['edges']:,} edges, edge homophily "
            f"{g['edge_homophily']:.3f}; {g['observed_test']} observed and {g['held_out_test']} "
            f"held-out test nodes. Nearest class mean on the held-out nodes' features (means from "
            f"all labels, an oracle, about the feature-only ceiling): "
            f"{g['nearest_centre_accuracy_held_out'] * 100:.1f}%. GLNN epochs: "
            + ", ".join(str(rep["graph"]["glnn"]["epochs"]) for rep in reports) + "."]
  return "\n".join(lines)


def main(argv):
  del argv
  meta = common.provenance("bench.glnn")
  reports = [run_seed(int(s)) for s in _SEEDS.value]
  text = common.header(meta) + "\n" + table(reports) + "\n"
  files.write_atomic(os.path.join(_OUT.value, "glnn.md"), text)
  files.write_json(os.path.join(_OUT.value, "glnn.json"),
                   {"meta": meta, "seeds": [int(s) for s in _SEEDS.value],
                    "reports": [{k: rep[k] for k in ("rows", "graph")} for rep in reports]})
  print(text)


if __name__ == "__main__":
  cli.run(main)
