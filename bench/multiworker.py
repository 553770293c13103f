r"""`tfkd.train` on two worker processes (MultiWorkerMirroredStrategy) against one: time and loss.

  .venv/bin/python -m bench.multiworker --out=runs/bench_multiworker
  .venv/bin/python -m bench.multiworker --kill_demo --out=runs/bench_multiworker_kill

Runs the real command, `python -m tfkd.train --config=configs/cifar10_resnet.py`
with only the scratch stage (ResNet-8, batch 128, one epoch of CIFAR-10's 45,000
training images), first as one process, then as two workers of a localhost
cluster (TF_CONFIG, `--config.distribute=multiworker`, one workdir). Reported:
each run's wall time (process start to exit, data loading included), the epoch's
own time (tfkd's epoch log line) and the epoch's training loss, and the load
average around each run. Both local workers share this machine's cores, so the
two-worker run shows correctness and the cost of the collectives, not a speed-up;
ResNet-8 has BatchNormalization, whose statistics each worker takes over its half
of the batch, so its loss is close to, not equal to, the one-process loss (the
exact comparison, without BatchNormalization, is tests/test_multiworker.py).

`--kill_demo`: two workers train `--demo_epochs` epochs of a `--demo_limit`-image
subset; worker 1 gets SIGKILL once the chief's backup holds 2 epochs; what the
chief then does in `--grace` seconds is recorded, and it is killed if still running
(a scheduler restarts all workers); then the same two commands run again. Reported:
the epochs the rerun trained, history.csv's epochs, and its last loss against an
uninterrupted two-worker run of the same config.

Writes multiworker.{md,json} (or multiworker_kill.{md,json}) to --out and prints the table.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

from absl import flags

from bench import common
from tfkd import cli, training
from tfkd.workers import free_local_ports
from tflite import files

_OUT = flags.DEFINE_string("out", "runs/bench_multiworker", "Output folder (and the runs' workdirs).")
_DATA = flags.DEFINE_string("data", "../shared/data/cifar10-jpeg", "CIFAR-10 class-folder copy.")
_EPOCHS = flags.DEFINE_integer("epochs", 1, "Epochs of the timed runs.")
_KILL_DEMO = flags.DEFINE_bool("kill_demo", False, "Kill a worker mid-run and rerun instead.")
_DEMO_LIMIT = flags.DEFINE_integer("demo_limit", 5120, "--kill_demo: training images used.")
_DEMO_EPOCHS = flags.DEFINE_integer("demo_epochs", 4, "--kill_demo: epochs.")
_GRACE = flags.DEFINE_integer("grace", 90, "--kill_demo: seconds to watch the chief after the kill.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCH_LINE = re.compile(r"\[scratch\] epoch (\d+)/(\d+) (\d+)s")


def command(workdir: str, epochs: int, train_limit: int = 0, multiworker: bool = False) -> list:
  return [sys.executable, "-m", "tfkd.train", "--config=configs/cifar10_resnet.py",
          f"--workdir={workdir}", f"--config.data.path={os.path.abspath(_DATA.value)}",
          "--config.stages=('scratch',)", f"--config.train.epochs={epochs}",
          f"--config.data.train_limit={train_limit}"] + (
              ["--config.distribute=multiworker"] if multiworker else [])


def start(workdir: str, epochs: int, train_limit: int, workers: int, log_name: str) -> list:
  """Starts one process, or `workers` workers of a localhost cluster; returns (Popen, log path)."""
  cluster = {"worker": [f"localhost:{p}" for p in free_local_ports(workers)]}
  started = []
  for index in range(workers):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if workers > 1:
      env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    log = os.path.join(_OUT.value, f"{log_name}_worker{index}.log")
    with open(log, "w") as out:
      started.append((subprocess.Popen(command(workdir, epochs, train_limit, workers > 1),
                                       cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT),
                      log))
  return started


def finish(started: list) -> None:
  for process, log in started:
    if process.wait() != 0:
      with open(log) as f:
        raise RuntimeError(f"{log}: exit code {process.returncode}\n{f.read()[-3000:]}")


def epoch_lines(log: str) -> list:
  with open(log) as f:
    return [tuple(int(g) for g in m.groups()) for m in EPOCH_LINE.finditer(f.read())]


def history(workdir: str) -> list:
  with open(os.path.join(workdir, "scratch", "history.csv"), newline="") as f:
    return [(int(r["epoch"]), float(r["loss"]), float(r["accuracy"])) for r in csv.DictReader(f)]


def timed_run(name: str, workers: int) -> dict:
  workdir = os.path.join(_OUT.value, name)
  load_before, begin = os.getloadavg()[0], time.time()
  started = start(workdir, _EPOCHS.value, 0, workers, name)
  finish(started)
  wall = time.time() - begin
  last_epoch = history(workdir)[-1]
  return {"run": name, "workers": workers, "wall_s": round(wall, 1),
          "epoch_s": [line[2] for line in epoch_lines(started[0][1])],
          "loss": last_epoch[1], "accuracy": last_epoch[2],
          "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0]}


def kill_demo() -> dict:
  epochs, limit = _DEMO_EPOCHS.value, _DEMO_LIMIT.value
  workdir = os.path.join(_OUT.value, "killed")
  stage_dir = os.path.join(workdir, "scratch")
  started = start(workdir, epochs, limit, 2, "first")
  while training.resume_epoch(stage_dir) < 2:
    if any(p.poll() is not None for p, _ in started):
      finish(started)
      raise RuntimeError("The run ended before it could be killed: raise --demo_epochs.")
    time.sleep(0.5)
  (chief, _), (worker1, _) = started
  worker1.send_signal(signal.SIGKILL)
  killed_at = time.time()
  backup_epochs = training.resume_epoch(stage_dir)
  try:
    chief.wait(timeout=_GRACE.value)
    chief_after_kill = (f"exited with code {chief.returncode} after "
                        f"{time.time() - killed_at:.0f}s")
  except subprocess.TimeoutExpired:
    chief.send_signal(signal.SIGKILL)
    chief.wait()
    chief_after_kill = f"still waiting after {_GRACE.value}s: killed"
  rerun = start(workdir, epochs, limit, 2, "rerun")
  finish(rerun)
  uninterrupted = os.path.join(_OUT.value, "uninterrupted")
  finish(start(uninterrupted, epochs, limit, 2, "uninterrupted"))
  return {"epochs": epochs, "train_limit": limit, "backup_epochs_at_kill": backup_epochs,
          "chief_after_kill": chief_after_kill,
          "rerun_trained_epochs": [line[0] for line in epoch_lines(rerun[0][1])],
          "history_epochs": [row[0] for row in history(workdir)],
          "rerun_last_loss": history(workdir)[-1][1],
          "uninterrupted_last_loss": history(uninterrupted)[-1][1]}


def main(argv):
  del argv
  os.makedirs(_OUT.value, exist_ok=True)
  meta = common.provenance("bench.multiworker")
  if _KILL_DEMO.value:
    result = {"meta": meta, "kill_demo": kill_demo()}
    demo = result["kill_demo"]
    text = (common.header(meta) + "\n" + "\n".join(f"- {k}: {v}" for k, v in demo.items()) + "\n")
    name = "multiworker_kill"
  else:
    runs = [timed_run("one_process", 1), timed_run("two_workers", 2)]
    result = {"meta": meta, "runs": runs}
    text = common.header(meta) + "\n| run | wall time | epoch time | training loss | accuracy | " \
        "load avg (1 min) before → after |\n|---|---|---|---|---|---|\n" + "".join(
            f"| {r['run']} | {r['wall_s']:.0f} s | {', '.join(f'{s} s' for s in r['epoch_s'])} | "
            f"{r['loss']:.4f} | {r['accuracy']:.4f} | {r['load_1min_before']:.1f} → "
            f"{r['load_1min_after']:.1f} |\n" for r in runs)
    name = "multiworker"
  files.write_json(os.path.join(_OUT.value, f"{name}.json"), result)
  files.write_atomic(os.path.join(_OUT.value, f"{name}.md"), text)
  print(text)


if __name__ == "__main__":
  cli.run(main)
