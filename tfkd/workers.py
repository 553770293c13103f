"""The workers of a multi-worker run (`MultiWorkerMirroredStrategy`): who writes, and agreeing.

Every worker runs the same command (`TF_CONFIG` tells each its place) and all of
them train in lock step: each step's gradients are summed across workers by
TensorFlow's collective ops. Files are the chief's job: the others save into
temporary folders that are deleted at once (Keras needs every worker to take
part in a save) and never write the run's artifacts. A decision read from the
shared workdir (a stage done, an epoch to resume at) is checked to be the same
on every worker before anyone acts on it: workers taking different branches
would wait for each other forever. On one worker every function here is a
plain local answer.

Example:
  strategy = tf.distribute.MultiWorkerMirroredStrategy()   # first TF call of the process
  if workers.is_chief(strategy):
    write_report(...)
  skip = workers.agree(strategy, os.path.exists(path), f"whether {path} exists")
"""

import socket

import tensorflow as tf

from tfkd.errors import TfkdError


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """Worker processes in `strategy`'s cluster (`TF_CONFIG`): 1 without a cluster."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return 1
  jobs = resolver.cluster_spec().as_dict()
  return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes files: the only one, or the chief of a cluster."""
  return strategy.extended.should_checkpoint


def agree(strategy: tf.distribute.Strategy, value: int, what: str) -> int:
  """`value` once every worker found the same; it also waits for every worker (a barrier).

  Args:
    strategy: the run's strategy.
    value: an int or bool each worker read on its own (e.g. whether a file exists).
    what: what `value` is, for the error.

  Returns:
    `value`, the same on every worker.

  Raises:
    TfkdError: workers found different values: they do not share one workdir.
  """
  if num_workers(strategy) < 2:
    return value
  local = tf.constant([int(value)], tf.int64)
  found = strategy.gather(strategy.run(lambda: local), axis=0).numpy().tolist()
  if len(set(found)) > 1:
    raise TfkdError(
        f"The workers disagree on {what}: {found} (one value per replica). Every worker must "
        "see the same --workdir: put it on a filesystem all machines mount at the same path "
        "(docs/distillation.md, 'Several machines').")
  return value


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has reached it (at once on one worker)."""
  agree(strategy, 1, "the barrier")


def free_local_ports(count: int) -> list:
  """`count` localhost ports free right now, for a TF_CONFIG cluster of local workers.

  Example:
    cluster = {"worker": [f"localhost:{p}" for p in free_local_ports(2)]}
  """
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports
