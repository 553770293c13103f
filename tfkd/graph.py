r"""Graph distillation from a config: GCN teacher → MLP scratch → GLNN MLP → int8 → report.

Usage:
  python -m tfkd.graph --config=configs/csbm_glnn.py --workdir=runs/glnn
  python -m tfkd.graph --config=configs/csbm_glnn.py --workdir=runs/cora \
      --config.graph.source=npz --config.graph.path=/data/cora.npz

With `graph.source='csbm'` the contextual SBM of `config.graph.csbm` is written to
`graph.path` (default workdir/graph.npz) unless that file exists; with 'npz' the
file is read (layouts: tfkd/graph_data.py). Then the steps of `tfkd.glnn`, then
the report: workdir/report.md, report.json and report.png (accuracy bars), with
the int8 MLPs' TFLite Micro section (arena, flash, parity with LiteRT on the
held-out test nodes) and each model's per-class metrics and confusion matrix on the
held-out nodes (report_confusion.png). Rerunning the command skips finished steps.
"""

import os

import numpy as np
from absl import flags, logging
from ml_collections import config_flags

from tfkd import cli, from_config, glnn, graph_data, report
from tfkd.errors import ConfigError
from tflite import benchmark, files

FLAGS = flags.FLAGS

LABELS = {"teacher": "GCN teacher (needs the graph)", "scratch": "MLP from scratch",
          "glnn": "MLP distilled (GLNN)"}


def settings(graph_config) -> glnn.Settings:
  """`config.graph`'s training settings as `glnn.Settings`."""
  c = graph_config
  return glnn.Settings(
      held_out=c.held_out, teacher_hidden=c.teacher.hidden, teacher_dropout=c.teacher.dropout,
      teacher_weight_decay=c.teacher.weight_decay, student_hidden=tuple(c.student.hidden),
      student_dropout=c.student.dropout, student_weight_decay=c.student.weight_decay,
      epochs=c.epochs, patience=c.patience, learning_rate=c.learning_rate,
      batch_size=c.batch_size, lam=c.lam, temperature=c.temperature,
      representative_size=c.representative_size)


def load_or_generate(graph_config, workdir: str) -> graph_data.Graph:
  """The graph `config.graph` names: the CSBM written once, or the `.npz` read."""
  c = graph_config
  path = c.path or os.path.join(workdir, "graph.npz")
  with from_config.reading("graph"):
    if c.source == "csbm" and not os.path.exists(path):
      graph_data.save_graph(path, graph_data.csbm(**c.csbm.to_dict()))
    elif c.source not in ("csbm", "npz"):
      raise ConfigError(f"Unknown config.graph.source={c.source!r}: use 'csbm' or 'npz'.")
    return graph_data.load_graph(path, split_seed=c.split_seed)


def _percent(value) -> str:
  return "—" if value is None else f"{value * 100:.2f}%"


def _measured(accuracy: dict, measured: dict) -> dict:
  """A row's accuracies, macro F1s and per-class metrics per test set (results written before
  tfkd measured per-class metrics have none)."""
  measured = measured or {}
  return {**accuracy, **{f"macro_f1_{name}": m and m["macro"]["f1"] for name, m in measured.items()},
          "metrics": measured}


def rows(run: glnn.GraphRun) -> list:
  """One dict per model of the report: label, where it runs, parameters, bytes, accuracies,
  macro F1s and per-class metrics."""
  table = []
  for step in ("teacher",) + glnn.MLPS:
    result = run.result(step)
    table.append({"model": LABELS[step], "runs_as": "Keras float32", "step": step,
                  "parameters": result["parameters"], "bytes": None,
                  **_measured(result["accuracy"], result.get("metrics"))})
  export = run.result("export")
  for step in glnn.MLPS:
    for mode in glnn.EXPORT_MODES:
      key = f"{step}_{mode}"
      table.append({"model": LABELS[step], "runs_as": f"LiteRT {mode}", "step": step,
                    "parameters": None,
                    "bytes": os.path.getsize(glnn.tflite_path(run, step, mode)),
                    **_measured(export["accuracy"][key], export.get("metrics", {}).get(key))})
  return table


def markdown_table(table) -> str:
  lines = ["| model | runs as | parameters | file bytes | test acc, observed nodes | "
           "test acc, held-out nodes | macro F1, observed | macro F1, held-out |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in table:
    f1 = [r.get(f"macro_f1_{name}") for name in ("observed", "held_out")]
    lines.append(f"| {r['model']} | {r['runs_as']} | "
                 f"{'—' if r['parameters'] is None else format(r['parameters'], ',')} | "
                 f"{'—' if r['bytes'] is None else format(r['bytes'], ',')} | "
                 f"{_percent(r['observed'])} | {_percent(r['held_out'])} | "
                 + " | ".join("—" if v is None else f"{v:.3f}" for v in f1) + " |")
  return "\n".join(lines)


def plot(table, path: str) -> None:
  """Grouped bars: each model's accuracy on the observed and the held-out test nodes."""
  fig, ax = files.new_figure(figsize=(10, 4.8))
  labels = [f"{r['model'].replace(' (', chr(10) + '(')}\n{r['runs_as']}" for r in table]
  x = np.arange(len(table))
  for offset, key, name in ((-0.2, "observed", "observed test nodes"),
                            (0.2, "held_out", "held-out test nodes")):
    values = [100 * (r[key] or 0.0) for r in table]
    bars = ax.bar(x + offset, values, 0.4, label=name)
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
  ax.set_xticks(x, labels, fontsize=7)
  ax.set_ylabel("test accuracy (%)")
  ax.set_ylim(0, 105)
  ax.set_title("GCN teacher, MLP from scratch, GLNN MLP")
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  files.save_figure(fig, path)


def write_report(run: glnn.GraphRun, report_config, meta: dict) -> str:
  """report.md, report.json, report.png and report_confusion.png in the workdir; returns the
  accuracy table."""
  table = rows(run)
  sample = run.graph.features[run.held_out if len(run.held_out) else run.observed_test]
  edge, sections = {}, []
  for step in glnn.MLPS:
    info, text = benchmark.edge_report(
        glnn.tflite_path(run, step, "int8"), sample, report_config.latency_runs,
        report_config.warmup_runs, report_config.threads, run_micro=True,
        parity_samples=report_config.parity_samples)
    edge[step] = info
    sections.append(f"### {LABELS[step]}, int8\n\n{text}")
  g = run.graph
  facts = {"nodes": g.num_nodes, "edges": g.edges.shape[1] // 2, "classes": g.num_classes,
           "features": g.features.shape[1], "train": len(g.train), "val": len(g.val),
           "observed_test": len(run.observed_test), "held_out_test": len(run.held_out),
           "edge_homophily": graph_data.edge_homophily(g.edges, g.labels),
           "nearest_centre_accuracy_held_out": (graph_data.nearest_centre_accuracy(
               g, run.held_out) if len(run.held_out) else None),
           "glnn": run.result("glnn")}
  table_md = markdown_table(table)
  body = ["# tfkd graph report: GLNN", "", table_md, "",
          f"Graph: {facts['nodes']:,} nodes, {facts['edges']:,} undirected edges, "
          f"{facts['classes']} classes, {facts['features']} features, edge homophily "
          f"{facts['edge_homophily']:.3f}; {facts['train']} training nodes (labelled), "
          f"{facts['val']} validation, {facts['observed_test']} observed and "
          f"{facts['held_out_test']} held-out test nodes. Nearest class mean (means from all "
          f"labels, an oracle) on the held-out nodes' features: {_percent(facts['nearest_centre_accuracy_held_out'])}, "
          "about the best a model of a node's features alone can do on a CSBM. Observed nodes' features (and, for "
          "GLNN, the teacher's soft labels) are used in training; held-out nodes are new to every "
          "model, and the GCN reads them with all their edges. GLNN α = "
          f"{facts['glnn']['alpha']:.4f} (λ = {run.settings.lam}, T = {run.settings.temperature}).",
          "", "![accuracy](report.png)", "", "## int8 MLPs on TFLite Micro", "",
          "Parity inputs: the held-out test nodes' features.", "", "\n\n".join(sections)]
  # Per class on the held-out nodes, the ones a device meets (the observed ones when none are held out).
  shown = "held_out" if len(run.held_out) else "observed"
  measured = {f"{r['model']}, {r['runs_as']}": r["metrics"][shown] for r in table
              if r["metrics"].get(shown)}
  if measured:
    body += ["", "## Per-class metrics", "", report.per_class_section(
        measured, run.workdir, g.class_names, f"the {shown.replace('_', '-')} test nodes")]
  files.write_atomic(os.path.join(run.workdir, "report.md"), "\n".join(body) + "\n")
  files.write_json(os.path.join(run.workdir, "report.json"),
                   {"rows": table, "graph": facts, "edge": edge, **meta})
  plot(table, os.path.join(run.workdir, "report.png"))
  return table_md


def run_graph(config, workdir: str) -> str:
  """Every step of a GLNN run for `config` in `workdir`; returns the report's accuracy table."""
  config = from_config.with_defaults(config)
  graph = load_or_generate(config.graph, workdir)
  with from_config.reading("graph"):
    run = glnn.GraphRun(graph, workdir, settings(config.graph), seed=config.seed)
  for step in (glnn.step_teacher, glnn.step_scratch, glnn.step_glnn, glnn.step_export):
    logging.info("Step %s", step.__name__)
    step(run)
  return write_report(run, config.report, {"config": config.to_dict()})


def main(argv):
  del argv
  logging.info("config.graph (seed %d):\n%s", FLAGS.config.seed, FLAGS.config.graph)
  print(run_graph(FLAGS.config, FLAGS.workdir))


def run():
  """The `tfkd-graph` command. Its flags are defined here, not on import: tests and bench.glnn
  import this module beside others (tfkd.search) that define `--config` too."""
  config_flags.DEFINE_config_file("config", None, "Path to a config file in configs/.")
  flags.DEFINE_string("workdir", None, "Folder for the graph, models, .tflite files and report.")
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)


if __name__ == "__main__":
  run()
