"""Logit matching (Ba & Caruana 2014; Tang et al. 2019): the student regresses the teacher's logits.

Soft targets compare the two softmax distributions, which are blind to a shift of
all of an example's logits and flatten large margins; matching the logits
themselves keeps both. Ba & Caruana trained shallow students this way, and Tang
et al. ("Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks", 2019) found it better than soft targets for a BiLSTM taught by BERT on
SST-2 with an augmented transfer set (docs/text.md).

    loss_i = mean_c (t_ic − s_ic)²

Example:
  loss = LogitMatching()
  distiller = Distiller(teacher, student, loss, student_loss_weight=0.0)
"""

import tensorflow as tf

from tfkd.losses import DistillationLoss


class LogitMatching(DistillationLoss):
  """Mean squared error between the teacher's and the student's logits, per example.

  There is no temperature: the logits are compared as they are.

  Example:
    LogitMatching().compute_loss(teacher_logits, student_logits)  # [batch]
  """

  def __init__(self, name: str = "logit_matching"):
    super().__init__(name=name)

  def compute_loss(self, teacher_outputs, student_outputs):
    error = tf.cast(teacher_outputs, tf.float32) - tf.cast(student_outputs, tf.float32)
    return tf.reduce_mean(tf.square(error), axis=-1)
