"""The wall time of `bench/cifar10_chain.sh`'s steps, read from the chain's log.

The chain appends every step's output to one log (runs/cifar10_chain.log) and
marks each start of a step with `[chain] <step>: starting`; a step stopped with
its session and started again has several attempts there. The stages log
`=== stage <name> finished in <s>s ===` and the training stages one line per
epoch (`training.EpochProgress`).

Example:
  step_times("runs/cifar10_chain.log", "e80_live")["distill"]["seconds"]
  sum(attempt_seconds("runs/cifar10_chain.log", "search"))
"""

import datetime
import re

_STEP = re.compile(r"\[chain\] (\w+): starting (\S+)")
# Python's absl lines; TensorFlow's C++ lines before absl starts ("I0000 00:00:<epoch s>") are not.
_ABSL_TIME = re.compile(r"^[IWEF](0[1-9]|1[0-2])(\d{2}) (\d{2}):(\d{2}):(\d{2})\.")
_EPOCH = re.compile(r"\[(\w+)\] epoch (\d+)/\d+ (\d+)s")
_STAGE = re.compile(r"=== stage (\w+) finished in (\d+)s")


def step_times(log_path: str, step: str) -> dict:
  """{stage: {"seconds", "epoch_seconds"}} of one chain step, over all its attempts.

  A stage with epoch lines is timed as the sum of its epochs (each epoch's last
  time), so a stage stopped and resumed counts its work once; other stages as
  their 'finished in' line.
  """
  epochs, finished, inside = {}, {}, False
  with open(log_path) as f:
    for line in f:
      started = _STEP.search(line)
      if started:
        inside = started.group(1) == step
      if not inside:
        continue
      epoch = _EPOCH.search(line)
      if epoch:
        epochs.setdefault(epoch.group(1), {})[int(epoch.group(2))] = int(epoch.group(3))
      stage = _STAGE.search(line)
      if stage:
        finished[stage.group(1)] = int(stage.group(2))
  times = {}
  for stage in finished:
    per_epoch = list(epochs.get(stage, {}).values())
    times[stage] = {"seconds": sum(per_epoch) if per_epoch else finished[stage],
                    "epoch_seconds": per_epoch}
  return times


def _local_time(utc_stamp: str) -> datetime.datetime:
  """The chain's UTC stamp (`date -u`) in local time, the time absl writes in its lines."""
  utc = datetime.datetime.strptime(utc_stamp, "%Y-%m-%dT%H:%M:%SZ")
  return utc.replace(tzinfo=datetime.timezone.utc).astimezone().replace(tzinfo=None)


def attempt_seconds(log_path: str, step: str) -> list:
  """Wall seconds of each attempt of one chain step: from its start to its last log line.

  The hours between sessions are not counted; time paused inside an attempt (e.g. for a
  test run) is. An attempt's last line is its last absl-timestamped line (`I1130 12:44:03`),
  in the year of the attempt's start.
  """
  attempts, start, last = [], None, None
  with open(log_path) as f:
    for line in f:
      started = _STEP.search(line)
      if started:
        if start is not None:
          attempts.append((last - start).total_seconds())
        start = last = None
        if started.group(1) == step:
          start = last = _local_time(started.group(2))
        continue
      stamp = _ABSL_TIME.match(line) if start is not None else None
      if stamp:
        last = max(last, datetime.datetime(start.year, *map(int, stamp.groups())))
  if start is not None:
    attempts.append((last - start).total_seconds())
  return attempts
