"""Edge report of a `.tflite` model: LiteRT latency, TFLite Micro run, cost, device fit.

  python -m tflite.benchmark --model=runs/x/export/distill_int8.tflite \
      [--threads=1] [--runs=200] [--warmup=20] [--micro] [--parity_samples=100] \
      [--c_out=firmware/] [--json_out=edge.json]

  # The same report on the first test images of a dataset (tfkd reads datasets):
  python -m tfkd.benchmark --model=... --data=../shared/data/cifar10-jpeg [same flags]

  # Streaming: frames from a folder or a video at a target rate (tflite.stream):
  python -m tflite.benchmark --stream --model=runs/x/export/distill_int8.tflite \
      --compare=runs/x/export/teacher_float32.tflite --frames=../shared/data/cifar10-jpeg/test \
      [--fps=30] [--threads=1] [--seconds=20] [--max_frames=500] [--json_out=stream.json] \
      [--plot_out=stream.png]

What it measures:
- LiteRT single-stream latency as in MLPerf Tiny: one input, `--warmup`
  untimed invokes, then `--runs` timed ones; p50 and p90 in ms.
- Cost from the graph (`tflite.cost`): parameters, MACs, peak-activation lower bound.
- With `--micro`, TFLite Micro (`tflite.micro`): unsupported ops, the smallest
  tensor arena (searched, confirmed by a run) and its ratio to the lower bound,
  output parity with LiteRT on `--parity_samples` inputs (against LiteRT's
  reference kernels and its default XNNPACK path), and flash bytes (the
  `.tflite` size).
- Device fit (`tflite.devices`): flash against model bytes, RAM against arena
  (against the lower bound when TFLM was not run).
- With `--c_out`, the model as a C++ array for firmware (`tflite.firmware`).

Inputs for latency and parity here are random, spanning the input's
quantisation range (they exercise the kernels, not realistic activations);
`python -m tfkd.benchmark --data=...` uses the first test images of a dataset.

`edge_report` is the same report as a function, for the pipeline's report.

With `--stream`, the streaming benchmark instead (`tflite.stream`): sustained
frames per second, dropped and late frames, latency p50/p99/p99.9 and CPU time
per frame, for `--model` and each `--compare` model, as a table and a plot.
"""

import os
from typing import Optional

import numpy as np
from absl import app, flags

from tflite import cost as tflite_cost
from tflite import cli, devices, files, firmware, graph, interpreter, micro, stream
from tflite.errors import TfliteError

FLAGS = flags.FLAGS


def define_flags():
  """The command's flags (defined only when run as a program, so importing is side-effect free).

  `tfkd.benchmark` defines these too, plus its dataset flags.
  """
  flags.DEFINE_string("model", None, "Path of the .tflite model.")
  flags.DEFINE_integer("threads", 1, "LiteRT interpreter threads.", lower_bound=1)
  flags.DEFINE_integer("runs", 200, "Timed LiteRT invokes.", lower_bound=1)
  flags.DEFINE_integer("warmup", 20, "Untimed LiteRT invokes before timing.", lower_bound=0)
  flags.DEFINE_bool("micro", False, "Also run TFLite Micro: ops, arena, parity, flash.")
  flags.DEFINE_integer("parity_samples", 100, "Inputs compared between TFLM and LiteRT.",
                       lower_bound=0)
  flags.DEFINE_string("c_out", None, "Folder for the model as C++ source and header.")
  flags.DEFINE_string("json_out", None, "Also write the report as JSON here.")


def define_stream_flags():
  """The streaming benchmark's flags (`python -m tflite.benchmark --stream`)."""
  flags.DEFINE_bool("stream", False, "Run the streaming benchmark instead of the edge report.")
  flags.DEFINE_string("frames", None, "--stream: a folder of images or a video file.")
  flags.DEFINE_float("fps", 30.0, "--stream: target frames per second; 0: as fast as possible.")
  flags.DEFINE_float("seconds", 20.0, "--stream: length of each stream.")
  flags.DEFINE_list("compare", [], "--stream: more .tflite files streamed after --model "
                    "(e.g. the float teacher beside the int8 student).")
  flags.DEFINE_integer("max_frames", 500, "--stream: frames decoded and cycled through.")
  flags.DEFINE_string("plot_out", None, "--stream: latency-over-time plot (PNG) here.")


def random_inputs(model_bytes: bytes, count: int, seed: int = 0) -> np.ndarray:
  """`count` inputs in model units covering the input tensor's range.

  Quantised inputs: uniform raw integers, dequantised. Unquantised integer
  inputs (token ids): uniform in [0, 100). Float inputs: uniform in [0, 255]
  (pixels, what image models exported by this project take).

  Args:
    model_bytes: the `.tflite` model.
    count: number of inputs.
    seed: random seed.

  Returns:
    An array of `count` inputs shaped like the model's first input.

  Example:
    random_inputs(model_bytes, 100).shape   # (100, 32, 32, 3)
  """
  detail = interpreter.load(model_bytes).get_input_details()[0]
  shape = (count, *detail["shape"][1:])
  rng = np.random.default_rng(seed)
  scale, zero_point = detail["quantization"]
  if np.issubdtype(detail["dtype"], np.integer) and scale:
    info = np.iinfo(detail["dtype"])
    raw = rng.integers(info.min, info.max, shape, endpoint=True)
    return ((raw - zero_point) * scale).astype(np.float32)
  if np.issubdtype(detail["dtype"], np.integer):
    return rng.integers(0, 100, shape).astype(detail["dtype"])
  return rng.uniform(0, 255, shape).astype(np.float32)


def edge_report(tflite_path: str, sample_inputs: Optional[np.ndarray] = None, runs: int = 200,
                warmup: int = 20, threads: int = 1, run_micro: bool = True,
                parity_samples: int = 100, c_out: Optional[str] = None,
                latency: Optional[dict] = None):
  """Everything `python -m tflite.benchmark` prints, for one `.tflite` model.

  Args:
    tflite_path: the `.tflite` file.
    sample_inputs: inputs in the Keras model's units (e.g. test images); the
      first is timed and the first `parity_samples` are compared on TFLM.
      None: random inputs (see `random_inputs`).
    runs, warmup, threads: LiteRT latency settings.
    run_micro: run TFLite Micro (op check, arena search, parity).
    parity_samples: inputs compared between TFLM and LiteRT.
    c_out: folder to write the C++ array to, or None.
    latency: this file's latency measured already (`interpreter.latency_ms`'s dict, e.g.
      from the report's interleaved rounds), reported instead of timing it again; None: time it.

  Returns:
    (report dict for JSON, markdown section). The dict has "model", "flash_bytes",
    "latency_ms", "cost", "micro" (or None) and "devices".

  Example:
    info, markdown = edge_report("runs/demo/export/distill_int8.tflite", test_x[:100])
  """
  interpreter.load(tflite_path)  # a damaged file stops here, with an error naming it
  model_bytes = graph.read_model_bytes(tflite_path)
  if sample_inputs is None or not len(sample_inputs):
    sample_inputs = random_inputs(model_bytes, max(parity_samples, 1))
  report = {"model": tflite_path, "flash_bytes": micro.flash_bytes(model_bytes),
            "latency_ms": latency or interpreter.latency_ms(model_bytes, sample_inputs[0], runs,
                                                            warmup, threads),
            "cost": tflite_cost.model_cost(model_bytes), "micro": None}
  arena_for_fit = None
  if run_micro:
    report["micro"] = micro_section(model_bytes, sample_inputs[:parity_samples],
                                    report["cost"]["peak_activation_bytes"])
    arena_for_fit = report["micro"]["arena_bytes"]
  report["devices"] = devices.fit_table(len(model_bytes), arena_for_fit
                                        or report["cost"]["peak_activation_bytes"])
  report["devices_ram_basis"] = "TFLM arena" if arena_for_fit else "peak-activation lower bound"
  if c_out:
    report["c_files"] = list(firmware.write_c_files(model_bytes, c_out,
                                                    firmware.c_identifier(tflite_path)))
  return report, markdown(report)


def micro_section(model_bytes: bytes, inputs: np.ndarray, lower_bound: int) -> dict:
  """TFLite Micro results: ops, arena (and its ratio to `lower_bound`), parity, flash."""
  support = micro.check_ops(model_bytes)
  section = {"ops": support.ops, "unsupported_ops": support.unsupported, "runs": support.runs,
             "arena_bytes": None, "flash_bytes": micro.flash_bytes(model_bytes)}
  if not support.runs:
    return section
  arena = micro.find_arena_size(model_bytes)
  section.update(arena_bytes=arena.size, arena_head_bytes=arena.head, arena_tail_bytes=arena.tail,
                 arena_smaller_fails=arena.smaller_fails, arena_granularity=arena.granularity,
                 arena_over_lower_bound=arena.size / lower_bound if lower_bound else None,
                 head_over_lower_bound=(arena.head / lower_bound
                                        if lower_bound and arena.head else None))
  if len(inputs):
    section["parity_reference_kernels"] = micro.parity(model_bytes, inputs, arena.size,
                                                       reference_kernels=True)
    section["parity_default_kernels"] = micro.parity(model_bytes, inputs, arena.size)
  return section


def _parity_text(p: dict) -> str:
  unit = " LSB" if p["integer_output"] else ""
  return (f"{p['identical']}/{p['samples']} identical, max abs diff {p['max_abs_diff']:g}{unit}, "
          f"top-1 agreement {p['argmax_agreement'] * 100:.0f}%")


# TFLM int8 kernels known to compute otherwise than LiteRT's, and where they come from.
_DILATION = ("wrong padding values (tflite-micro issues #1646, #2319); the converter emits them "
             "for Keras' dilated convolutions: use tfkd.text_models.DilatedConv1D or "
             "tf.nn.conv2d with `dilations`, which convert to one CONV_2D")
MICRO_MISMATCH_OPS = {"SPACE_TO_BATCH_ND": _DILATION, "BATCH_TO_SPACE_ND": _DILATION}


def parity_warning(micro_section: dict) -> str:
  """A warning line when TFLM's outputs differ from LiteRT's reference kernels by more than
  1 LSB (they should match bit for bit), naming the ops known to cause it; '' otherwise."""
  parity = (micro_section or {}).get("parity_reference_kernels")
  if not parity or parity["max_abs_diff"] <= 1:
    return ""
  ops_by_cause = {}
  for op in micro_section["ops"]:
    if op in MICRO_MISMATCH_OPS:
      ops_by_cause.setdefault(MICRO_MISMATCH_OPS[op], []).append(op)
  suspects = [f"{' and '.join(ops)}: {cause}" for cause, ops in ops_by_cause.items()]
  return ("**Warning: TFLite Micro computes this model otherwise than LiteRT** (top-1 agreement "
          f"{parity['argmax_agreement']:.0%}, up to {parity['max_abs_diff']:g} LSB apart): the "
          "accuracy measured on LiteRT does not hold on the device. " +
          ("Known cause: " + "; ".join(suspects) + "." if suspects else
           "Find the op by comparing both interpreters' intermediate tensors."))


def _cell(text: str) -> str:
  """Text safe inside a markdown table cell (TFLM's messages contain '||')."""
  return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: dict) -> str:
  """The markdown section of an `edge_report`."""
  latency, cost = report["latency_ms"], report["cost"]
  rows = [
      ("LiteRT latency p50 / p90", f"{interpreter.idle_ms(latency):.3f} / {latency['p90']:.3f} ms "
       f"({latency['threads']} thread(s)"
       + (f" on {latency['cpu']}" if "cpu" in latency else "")
       + f", {latency['runs']} runs after warm-up"
       + (f"; p50 of the quietest of {latency['rounds']} rounds)" if latency.get("rounds", 1) > 1
          else ")")),
      ("parameters", f"{cost['parameters']:,}"),
      ("MACs per inference", f"{cost['macs']:,}"),
      ("peak activation memory, lower bound", f"{cost['peak_activation_bytes']:,} B "
       f"(at {cost['peak_op']})"),
      ("flash", f"{report['flash_bytes']:,} B (the .tflite flatbuffer; TFLM code not included)"),
  ]
  m = report["micro"]
  if m is not None:
    rows.append(("TFLM ops", "all supported (" + ", ".join(m["ops"]) + ")" if m["runs"]
                 else "UNSUPPORTED: " + "; ".join(m["unsupported_ops"])))
    if m["arena_bytes"]:
      split = (f" (activations {m['arena_head_bytes']:,} B = {m['head_over_lower_bound']:.3f}×, "
               f"persistent {m['arena_tail_bytes']:,} B)" if m["arena_head_bytes"] else "")
      rows.append(("TFLM tensor arena (smallest that runs)",
                   f"{m['arena_bytes']:,} B = {m['arena_over_lower_bound']:.3f}× the lower bound"
                   f"{split}; {m['arena_bytes'] - m['arena_granularity']:,} B fails"))
    if m.get("parity_reference_kernels"):
      rows.append(("TFLM vs LiteRT reference kernels", _parity_text(m["parity_reference_kernels"])))
      rows.append(("TFLM vs LiteRT default kernels (XNNPACK)",
                   _parity_text(m["parity_default_kernels"])))
  lines = [f"**{os.path.basename(report['model'])}**", "", "| measure | value |", "|---|---|"]
  lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
  warning = parity_warning(m)
  if warning:
    lines += ["", warning]
  lines += ["", f"Device fit (RAM against the {report['devices_ram_basis']}; 'tight' = over "
                f"{devices.TIGHT_FRACTION:.0%} of a memory):", "", devices.markdown(report["devices"])]
  if report.get("c_files"):
    lines += ["", "Firmware array: " + ", ".join(f"`{p}`" for p in report["c_files"])]
  return "\n".join(lines)


def model_path_from_flags() -> str:
  """`--model`, checked to be a file (the commands' usage error otherwise)."""
  path = FLAGS.model
  if not path or not os.path.isfile(path):
    raise app.UsageError(f"--model={path!r} is not a file: pass a .tflite path.")
  return path


def report_from_flags(model_path: str, sample_inputs: Optional[np.ndarray] = None) -> dict:
  """Runs `edge_report` with the command's flags, prints it, writes `--json_out`.

  Args:
    model_path: the `.tflite` file.
    sample_inputs: inputs in the model's units, or None for random ones.

  Returns:
    The report dict (as written to `--json_out`).

  Example:
    report_from_flags(model_path_from_flags())   # what `python -m tflite.benchmark` does
  """
  report, text = edge_report(model_path, sample_inputs, FLAGS.runs, FLAGS.warmup, FLAGS.threads,
                             FLAGS.micro, FLAGS.parity_samples, FLAGS.c_out)
  print(text)
  if FLAGS.json_out:
    files.write_json(FLAGS.json_out, report)
  return report


def stream_from_flags(model_path: str) -> list:
  """Streams `--frames` through `--model` and each `--compare` model; prints, writes JSON/plot.

  Returns:
    The stream reports (`tflite.stream.stream_report`), `--model` first.
  """
  paths = [model_path] + list(FLAGS.compare)
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise TfliteError(f"--compare names no file: {missing}: pass .tflite paths.")
  if not FLAGS.frames:
    raise TfliteError("--stream needs --frames: a folder of images or a video file.")
  frames = stream.frames_by_shape(paths, FLAGS.frames, FLAGS.max_frames)
  reports = stream.stream_models(paths, frames, FLAGS.fps, FLAGS.threads, FLAGS.seconds,
                                 FLAGS.warmup)
  print(stream.markdown(reports))
  if FLAGS.json_out:
    files.write_json(FLAGS.json_out, {"frames": FLAGS.frames, "policy": stream.POLICY,
                                      "streams": [stream.without_timeline(r) for r in reports]})
  if FLAGS.plot_out:
    stream.plot_latency({f"{stream.fps_text(FLAGS.fps)}, {FLAGS.threads} thread(s)": reports},
                        FLAGS.plot_out)
  return reports


def main(argv):
  """The edge report of `--model` on random inputs, or with `--stream` the streaming benchmark."""
  del argv
  path = model_path_from_flags()
  if FLAGS.stream:
    stream_from_flags(path)
  else:
    report_from_flags(path)


def run():
  """The `tflite-benchmark` command: defines the flags (only now, never on import), runs `main`."""
  define_flags()
  define_stream_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
