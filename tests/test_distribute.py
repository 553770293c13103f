"""The Distiller under `tf.distribute.MirroredStrategy` trains as on one device.

Two logical CPU devices must be configured before TensorFlow initialises, so
the comparison runs in a fresh Python process: this file run as a script
trains the same Distiller (soft targets + a feature hint whose adapter is a
mirrored variable) on one device and on two replicas, and prints the losses and
final weights as JSON; then the same with ARD (a PGD attack inside each replica's
step, without random start so both runs see the same adversarial inputs). Models have no BatchNormalization, whose per-replica
batch statistics legitimately differ from one device's.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_mirrored_two_devices_match_one_device():
  result = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["replicas"] == 2 and out["devices"] == 2
  single, mirrored = out["single"], out["mirrored"]
  assert len(single["loss"]) == 3 and single["loss"][-1] < single["loss"][0]  # it learns
  np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-4)
  np.testing.assert_allclose(mirrored["distillation_loss"], single["distillation_loss"], rtol=1e-4)
  np.testing.assert_allclose(mirrored["student"], single["student"], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(mirrored["adapter"], single["adapter"], rtol=1e-3, atol=1e-5)
  assert not np.allclose(single["adapter"], out["adapter_before"])  # the adapter was trained
  single_ard, mirrored_ard = out["single_ard"], out["mirrored_ard"]
  np.testing.assert_allclose(mirrored_ard["loss"], single_ard["loss"], rtol=1e-4)
  np.testing.assert_allclose(mirrored_ard["student"], single_ard["student"], rtol=1e-3, atol=1e-5)
  assert not np.allclose(single_ard["loss"], single["loss"])  # the attack changed what was learnt


def _train_and_report():
  """Runs in the subprocess: one device, then MirroredStrategy on two logical CPUs."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  import tf_keras  # pylint: disable=import-outside-toplevel
  from tfkd import losses  # pylint: disable=import-outside-toplevel
  from tfkd.adversarial import AdversarialDistillation  # pylint: disable=import-outside-toplevel
  from tfkd.distiller import Distiller  # pylint: disable=import-outside-toplevel

  def convnet(name, width):
    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="feat")(inputs)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(3)(x), name=name)

  tf_keras.utils.set_random_seed(0)
  reference = {"teacher": convnet("teacher", 6), "student": convnet("student", 4)}
  reference_weights = {k: m.get_weights() for k, m in reference.items()}
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 8, 8, 3)).astype(np.float32)
  y = rng.integers(-1, 3, 64)   # some unlabelled (-1) examples too
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
  adapter_before = None

  def train(strategy, adversarial=None):
    nonlocal adapter_before
    with strategy.scope():
      teacher, student = convnet("teacher", 6), convnet("student", 4)
      teacher.set_weights(reference_weights["teacher"])
      student.set_weights(reference_weights["student"])
      hint = losses.FeatureDistillation("feat", "feat")   # 4 → 6 channels: a 1x1 conv adapter
      distiller = Distiller(teacher, student, [losses.LogitsDistillation(3.0), hint], [1.0, 0.5],
                            student_loss_weight=0.3, adversarial=adversarial)
      distiller.compile(optimizer=tf_keras.optimizers.SGD(0.1, momentum=0.9))
    if adapter_before is None:
      adapter_before = hint.adapter.kernel.numpy()
    else:
      hint.adapter.kernel.assign(adapter_before)   # the same start on both runs
    history = distiller.fit(dataset, epochs=3, verbose=0)
    return {"loss": history.history["loss"],
            "distillation_loss": history.history["distillation_loss"],
            "student": np.concatenate([w.ravel() for w in student.get_weights()]).tolist(),
            "adapter": hint.adapter.kernel.numpy().ravel().tolist()}

  single = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
  mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  mirrored = train(mirrored_strategy)
  ard = lambda: AdversarialDistillation("ard", epsilon=0.1, step_size=0.05, steps=2,
                                        random_start=False, clip_range=(-5.0, 5.0))
  single_ard = train(tf.distribute.OneDeviceStrategy("/cpu:0"), ard())
  mirrored_ard = train(mirrored_strategy, ard())
  print(json.dumps({"replicas": mirrored_strategy.num_replicas_in_sync,
                    "devices": len(tf.config.list_logical_devices("CPU")),
                    "adapter_before": adapter_before.ravel().tolist(),
                    "single": single, "mirrored": mirrored,
                    "single_ard": single_ard, "mirrored_ard": mirrored_ard}))


if __name__ == "__main__":
  _train_and_report()
