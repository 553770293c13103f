"""Distillation losses against NumPy reference computations."""

import numpy as np
import pytest

from tfkd import logit_matching, losses, seed
from tfkd.errors import ModelMismatchError


def softmax(z):
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def l2_normalize(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def resize_bilinear(maps, size):
  """[N, H, W, C] → [N, h, w, C], half-pixel centres (what tf.image.resize does)."""
  def axis_weights(n_in, n_out):
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, src - low
  r0, r1, fr = axis_weights(maps.shape[1], size[0])
  c0, c1, fc = axis_weights(maps.shape[2], size[1])
  rows = maps[:, r0] * (1 - fr)[None, :, None, None] + maps[:, r1] * fr[None, :, None, None]
  return rows[:, :, c0] * (1 - fc)[None, None, :, None] + rows[:, :, c1] * fc[None, None, :, None]


def smooth_l1(e):
  return np.where(np.abs(e) < 1, 0.5 * e**2, np.abs(e) - 0.5)


def random(*shape, seed=0, scale=1.0):
  return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


# Soft targets.

@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logits_distillation_matches_numpy(temperature):
  rng = np.random.default_rng(0)
  teacher, student = rng.normal(size=(2, 8, 10)) * 3
  p, q = softmax(teacher / temperature), softmax(student / temperature)
  expected = temperature**2 * np.sum(p * (np.log(p) - np.log(q)), axis=-1)
  got = losses.LogitsDistillation(temperature).compute_loss(
      teacher.astype(np.float32), student.astype(np.float32)).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_logits_distillation_is_zero_for_identical_logits():
  logits = np.random.default_rng(1).normal(size=(4, 5)).astype(np.float32)
  np.testing.assert_allclose(losses.LogitsDistillation(3.0).compute_loss(logits, logits), 0, atol=1e-5)


def test_temperature_must_be_positive():
  with pytest.raises(ValueError, match="temperature"):
    losses.LogitsDistillation(0.0)


# Logit matching.

def test_logit_matching_matches_numpy_and_sees_a_shift_soft_targets_ignore():
  rng = np.random.default_rng(2)
  teacher, student = (rng.normal(size=(2, 6, 3)) * 3).astype(np.float32)
  got = logit_matching.LogitMatching().compute_loss(teacher, student).numpy()
  np.testing.assert_allclose(got, np.mean((teacher - student) ** 2, axis=-1), rtol=1e-5)
  # Every logit of an example moved by 2: the same softmax, a loss of 2² = 4.
  shifted = teacher + 2.0
  np.testing.assert_allclose(losses.LogitsDistillation(1.0).compute_loss(teacher, shifted), 0,
                             atol=1e-5)
  np.testing.assert_allclose(logit_matching.LogitMatching().compute_loss(teacher, shifted), 4.0,
                             rtol=1e-5)


# FitNets hints.

def test_feature_distillation_conv_adapter_and_resize_match_numpy():
  teacher, student = random(3, 8, 8, 6, seed=1), random(3, 4, 4, 4, seed=2)
  loss = losses.FeatureDistillation("t", "s")
  loss.build(teacher.shape, student.shape)
  kernel, bias = [w.numpy() for w in loss.adapter.weights]
  assert kernel.shape == (1, 1, 4, 6) and len(loss.trainable_weights()) == 2
  adapted = np.einsum("nhwc,cd->nhwd", student, kernel[0, 0]) + bias
  expected = np.mean((teacher - resize_bilinear(adapted, (8, 8)))**2, axis=(1, 2, 3))
  np.testing.assert_allclose(loss.compute_loss(teacher, student), expected, rtol=1e-5)


def test_feature_distillation_dense_adapter_matches_numpy():
  teacher, student = random(5, 12, seed=3), random(5, 7, seed=4)
  loss = losses.FeatureDistillation("t", "s")
  loss.build(teacher.shape, student.shape)
  kernel, bias = [w.numpy() for w in loss.adapter.weights]
  expected = np.mean((teacher - (student @ kernel + bias))**2, axis=-1)
  np.testing.assert_allclose(loss.compute_loss(teacher, student), expected, rtol=1e-5)


def test_feature_distillation_without_adapter_is_plain_mse():
  teacher, student = random(2, 4, 4, 3, seed=5), random(2, 4, 4, 3, seed=6)
  loss = losses.FeatureDistillation("t", "s")   # 'auto': same widths, no adapter
  loss.build(teacher.shape, student.shape)
  assert loss.adapter is None and not loss.trainable_weights()
  np.testing.assert_allclose(loss.compute_loss(teacher, student),
                             np.mean((teacher - student)**2, axis=(1, 2, 3)), rtol=1e-5)


def test_feature_distillation_refuses_unmatched_layers():
  with pytest.raises(ModelMismatchError, match="same kind"):
    losses.FeatureDistillation("t", "s").build((None, 8, 8, 4), (None, 16))
  with pytest.raises(ModelMismatchError, match="adapter=False.*equal channels"):
    losses.FeatureDistillation("t", "s", adapter=False).build((None, 8), (None, 16))
  with pytest.raises(ValueError, match="build"):
    losses.FeatureDistillation("t", "s").compute_loss(random(2, 3), random(2, 3))


# The contrastive knowledge loss.

def numpy_contrastive(phi, psi, positive_mask, temperature):
  """(1/K_i) Σ_{k∈P(i)} −log[exp(φₖᵀψᵢ/τ) / Σⱼ exp(φⱼᵀψᵢ/τ)] for each anchor i, with loops."""
  n = len(psi)
  out = np.zeros(n)
  for i in range(n):
    denominator = sum(np.exp(phi[j] @ psi[i] / temperature) for j in range(n))
    positives = [k for k in range(n) if positive_mask[i, k]]
    out[i] = np.mean([-np.log(np.exp(phi[k] @ psi[i] / temperature) / denominator)
                      for k in positives])
  return out


def test_contrastive_knowledge_loss_matches_the_formula_for_any_positives():
  phi, psi = random(6, 5, seed=7), random(6, 5, seed=8)
  mask = np.eye(6, dtype=np.float32)
  mask[0, 3] = mask[2, 5] = mask[4, 1] = 1   # K = 2 positives for some anchors
  got = losses.contrastive_knowledge_loss(phi, psi, mask, 0.5).numpy()
  np.testing.assert_allclose(got, numpy_contrastive(phi, psi, mask, 0.5), rtol=1e-5)


def test_contrastive_distillation_matches_numpy():
  teacher, student = random(8, 4, 4, 6, seed=9), random(8, 3, seed=10)
  loss = losses.ContrastiveDistillation("t", "s", projection_dim=5, temperature=0.2)
  loss.build(teacher.shape, student.shape)
  assert len(loss.trainable_weights()) == 2   # both projection heads learn
  w_teacher, w_student = loss.teacher_head.kernel.numpy(), loss.student_head.kernel.numpy()
  phi = l2_normalize(teacher.mean(axis=(1, 2)) @ w_teacher)   # feature maps are pooled
  psi = l2_normalize(student @ w_student)
  expected = numpy_contrastive(phi, psi, np.eye(8), 0.2)
  np.testing.assert_allclose(loss.compute_loss(teacher, student), expected, rtol=1e-4)


def test_contrastive_distillation_needs_building_and_valid_settings():
  with pytest.raises(ValueError, match="build"):
    losses.ContrastiveDistillation().compute_loss(random(4, 3), random(4, 3))
  with pytest.raises(ValueError, match="temperature"):
    losses.ContrastiveDistillation(temperature=0)


# Attention transfer.

def numpy_attention(maps, p=2.0):
  return l2_normalize((np.abs(maps)**p).sum(-1).reshape(len(maps), -1))


def test_attention_transfer_matches_numpy():
  teacher, student = random(3, 4, 4, 8, seed=11), random(3, 4, 4, 2, seed=12)
  loss = losses.AttentionTransfer("t", "s", beta=1000.0)
  loss.build(teacher.shape, student.shape)
  expected = 1000.0 * np.mean((numpy_attention(student) - numpy_attention(teacher))**2, axis=-1)
  np.testing.assert_allclose(loss.compute_loss(teacher, student), expected, rtol=1e-4)


def test_attention_transfer_resizes_the_student_map():
  teacher, student = random(2, 8, 8, 4, seed=13), random(2, 4, 4, 4, seed=14)
  loss = losses.AttentionTransfer("t", "s", beta=1.0)
  loss.build(teacher.shape, student.shape)
  student_map = resize_bilinear((student**2).sum(-1, keepdims=True), (8, 8))
  expected = np.mean((l2_normalize(student_map.reshape(2, -1)) - numpy_attention(teacher))**2, -1)
  np.testing.assert_allclose(loss.compute_loss(teacher, student), expected, rtol=1e-4)


def test_attention_transfer_refuses_vectors():
  with pytest.raises(ModelMismatchError, match=r"feature maps \[batch, H, W, C\]"):
    losses.AttentionTransfer("t", "s").build((None, 16), (None, 16))


# Relational KD, after the authors' PyTorch code (pdist, RkdDistance, RKdAngle).

def numpy_rkd(teacher, student, distance_weight, angle_weight):
  def distances(e):
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    return d / d[d > 0].mean()
  def angles(e):
    diff = e[None, :, :] - e[:, None, :]          # diff[i, j] = e_j − e_i
    norm = np.linalg.norm(diff, axis=-1, keepdims=True)
    unit = np.divide(diff, norm, out=np.zeros_like(diff), where=norm > 0)
    return np.einsum("ijd,ikd->ijk", unit, unit)
  d = smooth_l1(distances(student) - distances(teacher)).mean(axis=1)
  a = smooth_l1(angles(student) - angles(teacher)).mean(axis=(1, 2))
  return distance_weight * d + angle_weight * a


def test_relational_distillation_matches_numpy():
  teacher, student = random(7, 10, seed=15, scale=3.0), random(7, 4, seed=16)
  loss = losses.RelationalDistillation("t", "s", distance_weight=25.0, angle_weight=50.0)
  got = loss.compute_loss(teacher, student).numpy()
  np.testing.assert_allclose(got, numpy_rkd(teacher, student, 25.0, 50.0), rtol=1e-4, atol=1e-6)
  # The batch mean is the paper's loss: both terms averaged over all pairs / triplets.
  assert got.mean() == pytest.approx(numpy_rkd(teacher, student, 25.0, 50.0).mean(), rel=1e-4)


def test_relational_distillation_is_zero_for_scaled_teacher_embeddings():
  teacher = random(6, 5, seed=17)
  # Distances are normalised by their mean and angles ignore scale: 3·t has the same relations.
  np.testing.assert_allclose(
      losses.RelationalDistillation("t", "s").compute_loss(teacher, 3.0 * teacher), 0, atol=1e-4)


def test_relational_distillation_pools_feature_maps():
  teacher, student = random(5, 2, 2, 6, seed=18), random(5, 2, 2, 3, seed=19)
  got = losses.RelationalDistillation("t", "s", 1.0, 2.0).compute_loss(teacher, student)
  expected = numpy_rkd(teacher.mean(axis=(1, 2)), student.mean(axis=(1, 2)), 1.0, 2.0)
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


# SEED.

def numpy_seed(teacher, student, hidden, projection, queue, tau_t, tau_s):
  """SEED's loss written out: similarities to [t_i; queue], teacher and student softmax, CE."""
  (w1, b1), (w2, b2) = hidden, projection
  t = l2_normalize(teacher.mean(axis=(1, 2)) if teacher.ndim == 4 else teacher)
  s = l2_normalize(np.maximum(student @ w1 + b1, 0.0) @ w2 + b2)
  teacher_scores = np.concatenate([(t * t).sum(-1, keepdims=True), t @ queue.T], axis=-1)
  student_scores = np.concatenate([(s * t).sum(-1, keepdims=True), s @ queue.T], axis=-1)
  return -(softmax(teacher_scores / tau_t) * log_softmax(student_scores / tau_s)).sum(-1)


def built_seed(teacher, student, **kwargs):
  loss = seed.SEEDDistillation("t", "s", **kwargs)
  loss.build(teacher.shape, student.shape)
  for layer in (loss.hidden, loss.projection):   # non-zero biases, so the test sees them
    layer.bias.assign(random(*layer.bias.shape, seed=3, scale=0.1))
  return loss


@pytest.mark.parametrize("tau_t", [0.01, 0.5])
def test_seed_matches_numpy(tau_t):
  teacher, student = random(6, 4, 4, 5, seed=11), random(6, 3, seed=12)  # teacher maps are pooled
  loss = built_seed(teacher, student, queue_size=7, teacher_temperature=tau_t,
                    student_temperature=0.2)
  assert len(loss.trainable_weights()) == 4   # the MLP head learns; the queue does not
  weights = [(l.kernel.numpy(), l.bias.numpy()) for l in (loss.hidden, loss.projection)]
  expected = numpy_seed(teacher, student, *weights, loss.queue.numpy(), tau_t, 0.2)
  np.testing.assert_allclose(loss.compute_loss(teacher, student), expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(loss.queue.numpy(), axis=-1), 1.0, rtol=1e-5)


def test_seed_queue_is_a_fifo_of_normalised_teacher_embeddings():
  loss = built_seed(random(1, 3), random(1, 2), queue_size=5)
  queue, pointer = loss.queue.numpy().copy(), 0
  for step, batch in enumerate([random(3, 3, seed=20), random(3, 3, seed=21), random(7, 3, seed=22)]):
    loss.update_state(batch)
    for row in l2_normalize(batch)[-5:]:   # a batch larger than the queue keeps its newest 5
      queue[pointer] = row
      pointer = (pointer + 1) % 5
    np.testing.assert_allclose(loss.queue.numpy(), queue, rtol=1e-6, err_msg=f"step {step}")
    assert int(loss.queue_pointer.numpy()) == pointer


def test_seed_needs_building_and_valid_settings():
  with pytest.raises(ValueError, match="build"):
    seed.SEEDDistillation().compute_loss(random(4, 3), random(4, 3))
  with pytest.raises(ValueError, match="queue_size"):
    seed.SEEDDistillation(queue_size=0)
  with pytest.raises(ValueError, match="student_temperature"):
    seed.SEEDDistillation(student_temperature=0)

def test_every_loss_round_trips_through_its_config():
  # Every argument away from its default, so that one left out of get_config shows.
  made = [(losses.LogitsDistillation, dict(temperature=2.5)),
          (losses.FeatureDistillation, dict(teacher_layer_name="stage2",
                                            student_layer_name="stage3", adapter=False)),
          (losses.ContrastiveDistillation, dict(teacher_layer_name="a", student_layer_name="b",
                                                projection_dim=32, temperature=0.2)),
          (losses.AttentionTransfer, dict(teacher_layer_name="stage1", student_layer_name="stage2",
                                          p=3.0, beta=10.0)),
          (losses.RelationalDistillation, dict(teacher_layer_name="f", student_layer_name="g",
                                               distance_weight=2.0, angle_weight=3.0)),
          (seed.SEEDDistillation, dict(teacher_layer_name="f", student_layer_name="g",
                                       queue_size=64, teacher_temperature=0.05,
                                       student_temperature=0.3, seed=3))]
  for cls, arguments in made:
    config = cls(**arguments).get_config()
    assert config == arguments, cls.__name__
    assert cls.from_config(config).get_config() == arguments, cls.__name__
