"""Adversarial examples in the models' input space, and adversarially robust distillation.

tfkd's image models take raw pixels in [0, 255] (normalisation is their first
layer), so an attack's radius ε and step are in pixel units: ε = 8 is the
literature's 8/255 of the range. Adversarial images are clipped to [0, 255].

  pgd_attack     projected gradient ascent in the L∞ ball (Madry et al. 2018)
  fgsm_attack    one signed-gradient step of size ε (Goodfellow et al. 2015)
  AdversarialDistillation
                 what the `Distiller` does with them: ARD (Goldblum et al. 2020)
                 or RSLAD (Zi et al. 2021), see its docstring and docs/distillation.md.
  pgd_examples   a PGD attack on a Keras model over a whole array, in batches: its
                 adversarial images score the model, and any `.tflite` of it (transferred).

Attacks run the model in inference mode (see `pgd_attack`) and loop in a
`tf.while_loop`, so they trace once inside a `train_step` and run per replica
under `tf.distribute` without Python-side loops.

Example:
  x_adv = pgd_attack(model, x, labels, cross_entropy, epsilon=8.0, step_size=2.0, steps=10)
"""

from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

METHODS = ("none", "ard", "rslad")
ATTACKS = ("fgsm", "pgd")
PIXEL_RANGE = (0.0, 255.0)
# β of each method: the adversarial share of the distillation loss (RSLAD's 5/6 from its code).
DEFAULT_ADVERSARIAL_WEIGHTS = {"ard": 1.0, "rslad": 5.0 / 6.0}


def cross_entropy(labels, logits):
  """Per-example cross-entropy of integer `labels` against `logits` (ARD's and PGD's attack loss)."""
  return tf_keras.losses.sparse_categorical_crossentropy(labels, tf.cast(logits, tf.float32),
                                                         from_logits=True)


def kl_divergence(teacher_logits, logits):
  """Per-example KL(softmax(teacher_logits) ‖ softmax(logits)) at temperature 1 (RSLAD's attack loss)."""
  teacher_log_probs = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32))
  log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
  return tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - log_probs), axis=-1)


def pgd_attack(model: Callable, x, target, loss_fn: Callable, epsilon: float, step_size: float,
               steps: int, random_start: bool = True,
               clip_range: Tuple[float, float] = PIXEL_RANGE, seed=None):
  """Projected gradient ascent on `loss_fn(target, model(x'))` with ‖x' − x‖∞ ≤ ε.

      x'₀ = x (+ uniform noise in [−ε, ε] with `random_start`), clipped to `clip_range`
      x'ₖ₊₁ = clip_range(clip_[x−ε, x+ε](x'ₖ + step_size · sign(∇ₓ' loss)))

  The model runs with `training=False`: BatchNorm uses its moving statistics, so
  each example's perturbation depends on that example alone (batch statistics would
  couple the examples of a batch), the attack does not move the moving statistics,
  and the model attacked is the one that is deployed (RSLAD's code also crafts with
  the student in eval mode).

  Args:
    model: a callable `model(x, training=False)` returning logits, e.g. a Keras model.
    x: float inputs [batch, ...] in the model's input space (tfkd: raw pixels).
    target: what `loss_fn` compares the logits with (labels, teacher logits, ...).
    loss_fn: `fn(target, logits) -> [batch]`, the per-example loss to maximise.
    epsilon: L∞ radius, in input units (pixels for tfkd models); >= 0.
    step_size: size of each signed-gradient step, in input units.
    steps: number of steps (0 returns x, or its random start).
    random_start: start at a uniform random point of the ball (Madry et al. 2018).
    clip_range: (low, high) of valid inputs; every x' stays inside.
    seed: a stateless seed (two integers) for the random start; None: TensorFlow's global RNG.

  Returns:
    A float32 tensor like `x`, with no gradient to `x` or the model.

  Example:
    x_adv = pgd_attack(model, images, labels, cross_entropy, 8.0, 2.0, 10)
  """
  if epsilon < 0 or step_size < 0 or steps < 0:
    raise ValueError(f"epsilon={epsilon}, step_size={step_size} and steps={steps} must be >= 0.")
  low, high = clip_range
  x = tf.cast(tf.convert_to_tensor(x), tf.float32)
  lower, upper = tf.maximum(x - epsilon, low), tf.minimum(x + epsilon, high)
  start = x
  if random_start:
    noise = (tf.random.uniform(tf.shape(x), -epsilon, epsilon) if seed is None else
             tf.random.stateless_uniform(tf.shape(x), seed, -epsilon, epsilon))
    start = tf.clip_by_value(x + noise, lower, upper)

  def step(i, x_adv):
    with tf.GradientTape() as tape:
      tape.watch(x_adv)
      loss = tf.reduce_sum(loss_fn(target, model(x_adv, training=False)))
    # Per-example losses summed: each example's gradient is its own loss's gradient.
    x_adv = x_adv + step_size * tf.sign(tape.gradient(loss, x_adv))
    return i + 1, tf.clip_by_value(x_adv, lower, upper)

  _, x_adv = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), start),
                           maximum_iterations=steps)
  return tf.stop_gradient(x_adv)


def fgsm_attack(model: Callable, x, target, loss_fn: Callable, epsilon: float,
                clip_range: Tuple[float, float] = PIXEL_RANGE):
  """The fast gradient sign method: x' = clip(x + ε · sign(∇ₓ loss)), one PGD step without a
  random start (Goodfellow et al. 2015). Arguments as `pgd_attack`'s."""
  return pgd_attack(model, x, target, loss_fn, epsilon, epsilon, 1, random_start=False,
                    clip_range=clip_range)


class AdversarialDistillation:
  """How the `Distiller` crafts adversarial inputs against the student and learns from them.

  With the Distiller's hard-label weight α and distillation losses D = Σᵢ wᵢ·lossᵢ
  (for `soft`: T²·KL(σ(t/T) ‖ σ(s/T))), each example's training loss becomes

      α · CE(y, s(x)) + (1 − α) · [(1 − β) · D(t(x), s(x)) + β · D(t(x), s(x'))]

  t(x): the teachers on the clean input (live or cached); s(x'): the student on the
  adversarial input x' crafted against the student in its L∞ ball:
  - 'ard' (Goldblum et al. 2020, "Adversarially Robust Distillation"): x' maximises
    CE(y, s(x')) (an unlabelled example, y = −1, takes the teacher's class); β = 1.
    With `soft` this is the paper's α'·T²·KL(t(x), s(x')) + (1 − α')·CE(y, s(x)), α' = 1 − α.
  - 'rslad' (Zi et al. 2021, "Revisiting Adversarial Robustness Distillation: Robust
    Soft Labels Make Student Better"): x' maximises KL(σ(t(x)) ‖ σ(s(x'))) at T = 1;
    β = 5/6. With `soft`, T = 1 and α = 0 this is the paper's
    (1 − β)·KL(t(x), s(x)) + β·KL(t(x), s(x')) exactly.

  Args:
    method: 'ard' or 'rslad'.
    attack: 'pgd' (`steps` steps of `step_size`, from a random start) or 'fgsm' (one step of ε).
    epsilon: L∞ radius in input units (raw pixels for tfkd image models: 8 = 8/255).
    step_size: PGD step in input units.
    steps: PGD steps.
    random_start: PGD starts at a uniform random point of the ball.
    adversarial_weight: β in [0, 1]; None: the method's (ARD 1, RSLAD 5/6).
    clip_range: valid input range.

  Example:
    Distiller(teacher, student, LogitsDistillation(4.0), student_loss_weight=0.1,
              adversarial=AdversarialDistillation("ard", epsilon=8.0, steps=10))
  """

  def __init__(self, method: str, attack: str = "pgd", epsilon: float = 8.0,
               step_size: float = 2.0, steps: int = 10, random_start: bool = True,
               adversarial_weight: Optional[float] = None,
               clip_range: Tuple[float, float] = PIXEL_RANGE):
    if method not in DEFAULT_ADVERSARIAL_WEIGHTS:
      raise ValueError(f"method must be one of {list(DEFAULT_ADVERSARIAL_WEIGHTS)}, got {method!r}.")
    if attack not in ATTACKS:
      raise ValueError(f"attack must be one of {list(ATTACKS)}, got {attack!r}.")
    if epsilon <= 0 or step_size <= 0 or steps < 1:
      raise ValueError(f"epsilon={epsilon} and step_size={step_size} must be > 0 and "
                       f"steps={steps} >= 1.")
    if adversarial_weight is None:
      adversarial_weight = DEFAULT_ADVERSARIAL_WEIGHTS[method]
    if not 0.0 <= adversarial_weight <= 1.0:
      raise ValueError(f"adversarial_weight must be in [0, 1], got {adversarial_weight}.")
    self.method, self.attack = method, attack
    self.epsilon, self.step_size, self.steps = float(epsilon), float(step_size), int(steps)
    self.random_start = bool(random_start)
    self.adversarial_weight = float(adversarial_weight)
    self.clip_range = tuple(float(v) for v in clip_range)

  def attack_target(self, labels, teacher_logits):
    """(target, loss_fn) the attack maximises: ARD the labels' CE, RSLAD the KL to the teacher."""
    if self.method == "rslad":
      return teacher_logits, kl_divergence
    teacher_class = tf.argmax(teacher_logits, axis=-1, output_type=tf.int32)
    labels = tf.cast(labels, tf.int32)
    return tf.where(labels >= 0, labels, teacher_class), cross_entropy

  def craft(self, student: tf_keras.Model, x, labels, teacher_logits):
    """Adversarial inputs against `student` for a batch, with no gradient."""
    target, loss_fn = self.attack_target(labels, teacher_logits)
    if self.attack == "fgsm":
      return fgsm_attack(student, x, target, loss_fn, self.epsilon, self.clip_range)
    return pgd_attack(student, x, target, loss_fn, self.epsilon, self.step_size, self.steps,
                      self.random_start, self.clip_range)

  def get_config(self) -> dict:
    return {"method": self.method, "attack": self.attack, "epsilon": self.epsilon,
            "step_size": self.step_size, "steps": self.steps, "random_start": self.random_start,
            "adversarial_weight": self.adversarial_weight, "clip_range": self.clip_range}


def pgd_examples(model: tf_keras.Model, x: np.ndarray, y: np.ndarray, epsilon: float,
                 step_size: float, steps: int, batch_size: int = 500,
                 seed: int = 0) -> np.ndarray:
  """PGD adversarial examples (CE on the labels, random start) against a Keras model, in batches.

  Args:
    model: a Keras classifier returning logits, taking raw pixels in [0, 255].
    x: images [N, ...] (uint8 or float) in [0, 255].
    y: integer labels [N].
    epsilon, step_size, steps: the attack, in pixel units.
    batch_size: images attacked at once.
    seed: the random start's seed.

  Returns:
    float32 [N, ...] adversarial images, to feed to `model` or to a `.tflite` of it
    (`tflite.interpreter` quantizes float inputs with the model's own input scale).
  """
  attack = tf.function(lambda xb, yb, batch_seed: pgd_attack(
      model, xb, yb, cross_entropy, epsilon, step_size, steps, random_start=True, seed=batch_seed))
  return np.concatenate([attack(tf.constant(x[i:i + batch_size], tf.float32),
                                tf.constant(y[i:i + batch_size], tf.int32),
                                tf.constant([seed, i], tf.int32)).numpy()
                         for i in range(0, len(x), batch_size)])
