"""Adversarial examples and adversarially robust distillation (ARD, RSLAD): the attacks'
constraints and a hand-computed FGSM step, the losses against NumPy, a Distiller step, the config."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from configs import defaults
from tfkd import adversarial, config_checks, from_config, losses
from tfkd.adversarial import AdversarialDistillation
from tfkd.distiller import Distiller
from tfkd.errors import ConfigError


def log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def kl(teacher_logits, student_logits, temperature=1.0):
  """KL(softmax(t/T) ‖ softmax(s/T)) per row, in NumPy."""
  log_p, log_q = log_softmax(teacher_logits / temperature), log_softmax(student_logits / temperature)
  return (np.exp(log_p) * (log_p - log_q)).sum(-1)


def cross_entropy(labels, logits):
  return -log_softmax(logits)[np.arange(len(labels)), labels]


def convnet(name, width=4, classes=3, batch_norm=True):
  """A tiny image classifier on raw pixels (normalised inside, as tfkd models are)."""
  inputs = tf_keras.Input((8, 8, 3))
  x = tf_keras.layers.Rescaling(1 / 127.5, -1.0)(inputs)
  x = tf_keras.layers.Conv2D(width, 3, padding="same")(x)
  if batch_norm:
    x = tf_keras.layers.BatchNormalization()(x)
  x = tf_keras.layers.ReLU()(x)
  x = tf_keras.layers.GlobalAveragePooling2D()(x)
  return tf_keras.Model(inputs, tf_keras.layers.Dense(classes)(x), name=name)


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 255, (16, 8, 8, 3)).astype(np.float32)
  x[:, 0, 0, :] = 0.0     # pixels at the range's ends: the attack must not leave it
  x[:, 1, 1, :] = 255.0
  return x, rng.integers(0, 3, 16)


def test_pgd_stays_in_the_ball_and_the_pixel_range_and_raises_the_loss(batch):
  x, y = batch
  tf_keras.utils.set_random_seed(0)
  model = convnet("model")
  bn_before = [w.numpy().copy() for w in model.non_trainable_weights]
  x_adv = adversarial.pgd_attack(model, x, y, adversarial.cross_entropy, epsilon=8.0,
                                 step_size=2.0, steps=5).numpy()
  assert np.abs(x_adv - x).max() <= 8.0 + 1e-4
  assert x_adv.min() >= 0.0 and x_adv.max() <= 255.0
  assert np.abs(x_adv - x).max() > 7.0             # it went to the edge of the ball somewhere
  clean = cross_entropy(y, model.predict(x, verbose=0))
  attacked = cross_entropy(y, model.predict(x_adv, verbose=0))
  assert (attacked > clean).mean() >= 0.9 and attacked.mean() > clean.mean()
  for before, after in zip(bn_before, model.non_trainable_weights):
    np.testing.assert_array_equal(before, after.numpy())  # inference mode: BN statistics untouched
  # A stateless seed makes the random start, so the attack, reproducible.
  again = [adversarial.pgd_attack(model, x, y, adversarial.cross_entropy, 8.0, 2.0, 2,
                                  seed=[1, 2]).numpy() for _ in range(2)]
  np.testing.assert_array_equal(*again)


def test_fgsm_is_one_hand_computed_sign_gradient_step_on_a_linear_model():
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 255, (6, 4)).astype(np.float32)
  x[0, 0], x[1, 1] = 1.0, 254.0   # steps that would leave [0, 255] are clipped
  y = rng.integers(0, 3, 6)
  w, b = rng.normal(size=(4, 3)).astype(np.float32) * 0.01, rng.normal(size=3).astype(np.float32)
  model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
  model.set_weights([w, b])
  # ∂CE/∂x = W (softmax(xW + b) − onehot(y)) for logits xW + b.
  probs = np.exp(log_softmax(x @ w + b))
  gradient = (probs - np.eye(3)[y]) @ w.T
  expected = np.clip(x + 4.0 * np.sign(gradient), 0, 255)
  got = adversarial.fgsm_attack(model, x, y, adversarial.cross_entropy, epsilon=4.0).numpy()
  np.testing.assert_allclose(got, expected, atol=1e-4)
  assert got[0, 0] in (0.0, 5.0) and got[1, 1] in (250.0, 255.0)


def test_attack_losses_match_numpy_and_ard_targets_the_teachers_class_when_unlabelled():
  rng = np.random.default_rng(2)
  t, s = rng.normal(size=(5, 4)) * 3, rng.normal(size=(5, 4)) * 3
  y = np.array([0, 3, -1, 2, -1])
  np.testing.assert_allclose(adversarial.kl_divergence(t, s).numpy(), kl(t, s), rtol=1e-5)
  np.testing.assert_allclose(adversarial.cross_entropy(np.maximum(y, 0), s).numpy(),
                             cross_entropy(np.maximum(y, 0), s), rtol=1e-5)
  target, loss_fn = AdversarialDistillation("ard").attack_target(y, t.astype(np.float32))
  np.testing.assert_array_equal(target.numpy(), np.where(y >= 0, y, t.argmax(-1)))
  assert loss_fn is adversarial.cross_entropy
  target, loss_fn = AdversarialDistillation("rslad").attack_target(y, t)
  assert loss_fn is adversarial.kl_divergence and target is t


@pytest.mark.parametrize("method", ["ard", "rslad"])
def test_ard_and_rslad_losses_match_their_papers_in_numpy(batch, method):
  """Fixed inputs x, x' → the Distiller's per-example loss equals the paper's formula on the logits."""
  x, y = batch
  x_adv = np.clip(x + np.random.default_rng(3).uniform(-8, 8, x.shape), 0, 255).astype(np.float32)
  tf_keras.utils.set_random_seed(1)
  teacher, student = convnet("teacher", 6), convnet("student")
  if method == "ard":   # paper: α'·T²·KL(t(x) ‖ s(x')) + (1 − α')·CE(s(x), y), α' = 1 − α
    alpha, temperature, weight = 0.3, 4.0, None
  else:                 # paper: (1 − β)·KL(t(x) ‖ s(x)) + β·KL(t(x) ‖ s(x')), T = 1, β = 5/6
    alpha, temperature, weight = 0.0, 1.0, None
  distiller = Distiller(teacher, student, losses.LogitsDistillation(temperature),
                        student_loss_weight=alpha,
                        adversarial=AdversarialDistillation(method, adversarial_weight=weight))
  distiller.compile()
  total, *_ = distiller._compute_losses(  # pylint: disable=protected-access
      tf.constant(x), tf.constant(y), distiller.teacher_outputs(tf.constant(x)), training=False,
      x_adversarial=tf.constant(x_adv))
  t, s, s_adv = (m.predict(v, verbose=0) for m, v in ((teacher, x), (student, x), (student, x_adv)))
  if method == "ard":
    expected = (1 - alpha) * temperature**2 * kl(t, s_adv, temperature) + alpha * cross_entropy(y, s)
  else:
    expected = kl(t, s) / 6 + 5 / 6 * kl(t, s_adv)
  np.testing.assert_allclose(total.numpy(), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method,attack,cached", [("ard", "pgd", False), ("rslad", "fgsm", True)])
def test_a_distiller_step_with_adversarial_training_moves_the_student_only(batch, method, attack,
                                                                             cached):
  x, y = batch
  tf_keras.utils.set_random_seed(2)
  teacher, student = convnet("teacher", 6), convnet("student")
  teacher_before, student_before = teacher.get_weights(), student.get_weights()
  adversary = AdversarialDistillation(method, attack, epsilon=8.0, step_size=4.0, steps=2)
  if cached:  # the teacher's logits come with the batch; the attack needs no live teacher
    features = (x, teacher.predict(x, verbose=0))
    distiller = Distiller(None, student, losses.LogitsDistillation(1.0), student_loss_weight=0.0,
                          adversarial=adversary)
  else:
    features = x
    distiller = Distiller(teacher, student, losses.LogitsDistillation(4.0),
                          student_loss_weight=0.3, adversarial=adversary)
  distiller.compile(optimizer=tf_keras.optimizers.SGD(0.05))
  history = distiller.fit(tf.data.Dataset.from_tensor_slices((features, y)).batch(8), epochs=1,
                          verbose=0)
  assert np.isfinite(history.history["loss"][0]) and history.history["distillation_loss"][0] > 0
  for before, after in zip(teacher_before, teacher.get_weights()):
    np.testing.assert_array_equal(before, after)    # BN statistics included
  assert any(not np.array_equal(b, a) for b, a in zip(student_before, student.get_weights()))


def test_adversarial_distillation_from_the_config_and_its_checks():
  config = defaults.get_config()
  assert from_config.distiller(config.distill, [convnet("t")], convnet("s")).adversarial is None
  assert not from_config.robust_evaluation(config)
  config.distill.adversarial.method = "rslad"
  config.distill.adversarial.attack = "fgsm"
  distiller = from_config.distiller(config.distill, [convnet("t")], convnet("s"))
  assert distiller.adversarial.get_config()["adversarial_weight"] == pytest.approx(5 / 6)
  assert distiller.adversarial.attack == "fgsm"
  assert from_config.robust_evaluation(config)       # 'auto': on with adversarial distillation
  config.distill.adversarial.weight = 0.5
  assert from_config.adversarial_distillation(config.distill.adversarial).adversarial_weight == 0.5
  config.report.robust = "off"
  assert not from_config.robust_evaluation(config)
  config.distill.adversarial.method = "trades"
  with pytest.raises(ConfigError, match=r"distill.adversarial.method='trades' is not valid: use "
                                        r"one of \['none', 'ard', 'rslad'\]"):
    config_checks.validate(config)
  config.distill.adversarial.method = "ard"
  config.data.source = "text"
  with pytest.raises(ConfigError, match="data.source='text' gives token ids"):
    config_checks._check_run(config)  # pylint: disable=protected-access
  text = tf_keras.Sequential([tf_keras.Input((5,), dtype="int32"), tf_keras.layers.Embedding(9, 2),
                              tf_keras.layers.GlobalAveragePooling1D(), tf_keras.layers.Dense(3)])
  with pytest.raises(ValueError, match="takes int32 \\(token ids\\)"):
    Distiller(None, text, losses.LogitsDistillation(), adversarial=AdversarialDistillation("ard"))
