"""Text classifiers over int32 token ids: a BiLSTM and a Transformer teacher, CNN students.

Every model takes int32 token ids [batch, max_length] (0 = padding, see
`tfkd.text`) and returns logits from a Dense layer named `logits`; the pooled
sentence vector is a layer named `features` (the hook point for feature
distillation). Builders share the image models' signature, so
`tfkd.models.build_model` finds them by name; `normalization` is accepted and
ignored (token ids are not normalised).

The students, `text_cnn` (Kim 2014: parallel convolutions of a few widths over
word embeddings, max-pooled over time) and `text_dcnn` (stacked dilated
convolutions with residual sums: features of up to 15 tokens), use only ops
that full-integer int8 conversion and TFLite Micro support: GATHER (embedding),
EXPAND_DIMS/RESHAPE, CONV_2D (Conv1D), ADD, REDUCE_MAX (max over time),
CONCATENATION and FULLY_CONNECTED. Their int8 file is about vocab_size x embedding_dim bytes for
the embedding table plus a few tens of kB (text_dcnn: about 130 kB at 128 filters).

The teachers need not run on a microcontroller, only convert to float32 TFLite
(for the report's latency): padding is masked with arithmetic on the ids,
rather than Keras masks, which keeps the graph to builtin TFLite ops.

Example:
  teacher = text_bilstm(num_classes=2, input_shape=(48,), vocab_size=15000)
  student = text_cnn(num_classes=2, input_shape=(48,), vocab_size=15000, embedding_dim=48)
"""

from typing import Sequence

import tensorflow as tf
import tf_keras
from tf_keras.src.utils import control_flow_util


layers = tf_keras.layers


def _inputs(input_shape, vocab_size, model_name):
  if len(input_shape) != 1:
    raise ValueError(f"Text model {model_name!r} takes token ids, input_shape=(max_length,), not "
                     f"input_shape={tuple(input_shape)}: build it for a text dataset.")
  if not vocab_size:
    raise ValueError(f"Text model {model_name!r} needs vocab_size, the rows of its embedding "
                     "table: pass the vocabulary's size.")
  return tf_keras.Input(shape=tuple(input_shape), dtype="int32", name="token_ids")


@tf_keras.saving.register_keras_serializable(package="tfkd")
class PaddingMask(layers.Layer):
  """1.0 where a token id is not padding (0), else 0.0; shape [batch, length, 1]."""

  def call(self, ids):
    return tf.cast(tf.not_equal(ids, 0), tf.float32)[..., None]


@tf_keras.saving.register_keras_serializable(package="tfkd")
class MaskedMaxPooling(layers.Layer):
  """Max over the time steps of `[values, mask]` that are not padding.

  Padded steps get a large negative offset instead of being dropped, so the op
  stays a plain REDUCE_MAX and the result is the max over real tokens.
  """

  def call(self, inputs):
    values, mask = inputs
    return tf.reduce_max(values - (1.0 - mask) * 1e4, axis=1)


@tf_keras.saving.register_keras_serializable(package="tfkd")
class MaskedMeanPooling(layers.Layer):
  """Mean over the time steps of `[values, mask]` that are not padding."""

  def call(self, inputs):
    values, mask = inputs
    return tf.reduce_sum(values * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


@tf_keras.saving.register_keras_serializable(package="tfkd")
class AttentionMask(layers.Layer):
  """[batch, length, 1] padding mask → [batch, length, length]: True where both tokens are real."""

  def call(self, mask):
    return tf.matmul(mask, mask, transpose_b=True) > 0.5


@tf_keras.saving.register_keras_serializable(package="tfkd")
class PositionEmbedding(layers.Layer):
  """Adds a learned embedding of each position to a sequence [batch, length, dim]."""

  def build(self, input_shape):
    self.positions = self.add_weight(name="positions", shape=tuple(input_shape[1:]),
                                     initializer=tf_keras.initializers.RandomNormal(stddev=0.02))

  def call(self, x):
    return x + self.positions[None]


def text_cnn(num_classes: int, input_shape: Sequence[int], vocab_size: int = 0,
             embedding_dim: int = 48, filters: int = 128, kernel_sizes: Sequence[int] = (3, 4, 5),
             hidden: int = 0, dropout: float = 0.5, embedding_dropout: float = 0.1,
             normalization=None, name: str = "text_cnn") -> tf_keras.Model:
  """Microcontroller student: embedding, parallel Conv1D + ReLU, max over time, Dense.

  Args:
    num_classes: size of the logits.
    input_shape: (max_length,).
    vocab_size: rows of the embedding table (data.vocab_size).
    embedding_dim: width of each token's vector; with vocab_size it sets the
      int8 file size (15000 x 48 = 720 kB).
    filters: convolution filters per kernel size.
    kernel_sizes: widths (in tokens) of the parallel convolutions.
    hidden: width of a Dense + ReLU layer between the pooled features and the
      logits (0 = none), as the teachers have.
    dropout: dropout on the pooled features.
    embedding_dropout: dropout of whole embedding channels (SpatialDropout1D).
    normalization: ignored (token ids are not normalised).
    name: model name.

  Returns:
    A functional `tf_keras.Model` mapping int32 ids [batch, max_length] to logits.
  """
  del normalization
  inputs = _inputs(input_shape, vocab_size, name)
  x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
  x = layers.SpatialDropout1D(embedding_dropout, name="embedding_dropout")(x)
  branches = []
  for width in kernel_sizes:
    y = layers.Conv1D(filters, width, padding="same", activation="relu", name=f"conv{width}")(x)
    branches.append(layers.GlobalMaxPooling1D(name=f"max{width}")(y))
  x = branches[0] if len(branches) == 1 else layers.Concatenate(name="concat")(branches)
  if hidden:
    x = layers.Dropout(dropout, name="pooled_dropout")(x)
    x = layers.Dense(hidden, activation="relu", name="features")(x)
  else:
    x = layers.Activation("linear", name="features")(x)
  x = layers.Dropout(dropout, name="dropout")(x)
  logits = layers.Dense(num_classes, name="logits")(x)
  return tf_keras.Model(inputs, logits, name=name)


@tf_keras.saving.register_keras_serializable(package="tfkd")
class DilatedConv1D(layers.Conv1D):
  """`Conv1D` whose dilation reaches TFLite as CONV_2D's own dilation factor.

  Keras' Conv1D dilates through `tf.nn.convolution`, which the TFLite converter
  turns into SPACE_TO_BATCH_ND, CONV_2D, BATCH_TO_SPACE_ND; TFLite Micro's int8
  kernels of that pattern pad with wrong values (tflite-micro issues #1646,
  #2319) and disagree with LiteRT's (seen here: 60% of argmaxes alike on a
  distilled SST-2 student). Outside training (inference, export) this layer
  runs `tf.nn.conv2d` with `dilations`, which converts to one CONV_2D that both
  interpreters compute alike; in training it is Conv1D, because TensorFlow's CPU
  kernels cannot differentiate a dilated conv2d. Same arguments, weights and
  outputs as `Conv1D` (channels_last only); tfmot prunes its kernel.

  Example:
    conv = DilatedConv1D(128, 3, dilation_rate=2, padding="same", activation="relu")
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self.data_format != "channels_last" or self.groups != 1:
      raise ValueError("DilatedConv1D supports data_format='channels_last' and groups=1 only.")

  def get_prunable_weights(self):
    """The kernel, as for Conv1D: tfmot's magnitude pruning (`tfkd.compress.prune`) wraps it."""
    return [self.kernel]

  def call(self, inputs, training=None):
    if self.dilation_rate[0] == 1:
      return super().call(inputs)
    # `training` may be a tensor (tfmot's pruning wrapper passes the learning phase).
    return control_flow_util.smart_cond(False if training is None else training,
                                        lambda: super(DilatedConv1D, self).call(inputs),
                                        lambda: self._one_dilated_conv(inputs))

  def _one_dilated_conv(self, inputs):
    if self._is_causal:
      inputs = tf.pad(inputs, self._compute_causal_padding(inputs))
    padding = "VALID" if self._is_causal else self.padding.upper()
    conv1d = super().convolution_op

    @tf.custom_gradient
    def conv(x, w):
      outputs = tf.nn.conv2d(tf.expand_dims(x, 1), tf.expand_dims(w, 0),
                             strides=[1, 1, self.strides[0], 1], padding=padding,
                             dilations=[1, 1, self.dilation_rate[0], 1])

      def grad(upstream):  # rare outside training (e.g. saliency): Conv1D's, same outputs
        with tf.GradientTape() as tape:
          tape.watch([x, w])
          same = conv1d(x, w)
        return tape.gradient(same, [x, w], output_gradients=upstream)

      return tf.squeeze(outputs, axis=1), grad

    outputs = conv(inputs, self.kernel)
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    return self.activation(outputs) if self.activation is not None else outputs


def text_dcnn(num_classes: int, input_shape: Sequence[int], vocab_size: int = 0,
              embedding_dim: int = 48, filters: int = 128, kernel_size: int = 3,
              dilations: Sequence[int] = (1, 2, 4), dropout: float = 0.5,
              embedding_dropout: float = 0.1, normalization=None,
              name: str = "text_dcnn") -> tf_keras.Model:
  """Student: embedding, stacked dilated Conv1D + ReLU with residual sums, max over time, Dense.

  Kim's CNN (`text_cnn`) sees n-grams of at most its widest kernel, 5 tokens; a
  long sentence's sentiment often turns on words further apart ("not ... at all",
  "..., but"). Here each convolution reads the one before it with a wider
  dilation, so with kernel 3 and dilations (1, 2, 4) the last layer's features
  see 15 tokens; every layer's output is max-pooled over time and the pools
  concatenated, so short n-grams keep a direct path to the logits. Distilled
  from MiniLM on SST-2 it scores 86.2% int8 on dev against `text_cnn`'s 84.7%
  (5 seeds), 3.4 points more on the longest third of the sentences, at 5% more
  flash (BENCHMARKS.md, section 16).

  Args:
    num_classes: size of the logits.
    input_shape: (max_length,).
    vocab_size: rows of the embedding table (data.vocab_size).
    embedding_dim: width of each token's vector.
    filters: channels of every convolution (the residual sums need them equal).
    kernel_size: width of every convolution, in tokens.
    dilations: one convolution per entry, each with that dilation.
    dropout: dropout on the pooled features.
    embedding_dropout: dropout of whole embedding channels (SpatialDropout1D).
    normalization: ignored (token ids are not normalised).
    name: model name.

  Returns:
    A functional `tf_keras.Model` mapping int32 ids [batch, max_length] to logits.

  Example:
    student = text_dcnn(2, (48,), vocab_size=15000)   # 15,000 x 48: about 0.86 MB int8
  """
  del normalization
  if not dilations:
    raise ValueError("text_dcnn needs at least one convolution: dilations=(1, 2, 4), say.")
  inputs = _inputs(input_shape, vocab_size, name)
  x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
  x = layers.SpatialDropout1D(embedding_dropout, name="embedding_dropout")(x)
  pools = []
  for i, rate in enumerate(dilations):
    y = DilatedConv1D(filters, kernel_size, dilation_rate=rate, padding="same",
                      activation="relu", name=f"conv{i + 1}_d{rate}")(x)
    x = y if i == 0 else layers.Add(name=f"residual{i + 1}")([x, y])
    pools.append(layers.GlobalMaxPooling1D(name=f"max{i + 1}")(x))
  x = pools[0] if len(pools) == 1 else layers.Concatenate(name="concat")(pools)
  x = layers.Activation("linear", name="features")(x)
  x = layers.Dropout(dropout, name="dropout")(x)
  logits = layers.Dense(num_classes, name="logits")(x)
  return tf_keras.Model(inputs, logits, name=name)


def text_bilstm(num_classes: int, input_shape: Sequence[int], vocab_size: int = 0,
                embedding_dim: int = 128, units: int = 128, hidden: int = 128,
                dropout: float = 0.4, embedding_dropout: float = 0.1, normalization=None,
                name: str = "text_bilstm") -> tf_keras.Model:
  """Teacher: embedding, bidirectional LSTM, max over the real tokens, a hidden Dense layer.

  Both LSTM directions read every step; because padding sits at the end, the
  backward LSTM starts on padding, which it learns to skip (padding's
  embedding is trained), and the pooling ignores padded steps.

  Args:
    num_classes: size of the logits.
    input_shape: (max_length,).
    vocab_size: rows of the embedding table.
    embedding_dim: token vector width.
    units: LSTM units per direction.
    hidden: width of the Dense layer after pooling.
    dropout: dropout before the hidden and logits layers.
    embedding_dropout: SpatialDropout1D rate on the embeddings.
    normalization: ignored.
    name: model name.

  Returns:
    A functional `tf_keras.Model` mapping int32 ids to logits.
  """
  del normalization
  inputs = _inputs(input_shape, vocab_size, name)
  mask = PaddingMask(name="padding_mask")(inputs)
  x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
  x = layers.SpatialDropout1D(embedding_dropout, name="embedding_dropout")(x)
  x = layers.Bidirectional(layers.LSTM(units, return_sequences=True, unroll=True), name="bilstm")(x)
  x = MaskedMaxPooling(name="max_over_time")([x, mask])
  x = layers.Dropout(dropout, name="dropout")(x)
  x = layers.Dense(hidden, activation="relu", name="features")(x)
  x = layers.Dropout(dropout, name="features_dropout")(x)
  logits = layers.Dense(num_classes, name="logits")(x)
  return tf_keras.Model(inputs, logits, name=name)


def text_transformer(num_classes: int, input_shape: Sequence[int], vocab_size: int = 0,
                     embedding_dim: int = 128, layers_count: int = 2, heads: int = 4,
                     ffn_dim: int = 256, dropout: float = 0.1, normalization=None,
                     name: str = "text_transformer") -> tf_keras.Model:
  """Teacher: a small Transformer encoder (post-norm blocks) with masked mean pooling.

  Args:
    num_classes: size of the logits.
    input_shape: (max_length,).
    vocab_size: rows of the embedding table.
    embedding_dim: model width.
    layers_count: encoder blocks.
    heads: attention heads.
    ffn_dim: width of each block's feed-forward layer.
    dropout: dropout in the blocks and before the logits.
    normalization: ignored.
    name: model name.

  Returns:
    A functional `tf_keras.Model` mapping int32 ids to logits.
  """
  del normalization
  inputs = _inputs(input_shape, vocab_size, name)
  mask = PaddingMask(name="padding_mask")(inputs)
  attention_mask = AttentionMask(name="attention_mask")(mask)
  x = layers.Embedding(vocab_size, embedding_dim, name="embedding")(inputs)
  x = PositionEmbedding(name="positions")(x)
  x = layers.Dropout(dropout, name="embedding_dropout")(x)
  for i in range(layers_count):
    attended = layers.MultiHeadAttention(heads, embedding_dim // heads, dropout=dropout,
                                         name=f"block{i + 1}_attention")(
                                             x, x, attention_mask=attention_mask)
    x = layers.LayerNormalization(name=f"block{i + 1}_norm1")(
        layers.Add(name=f"block{i + 1}_add1")(
            [x, layers.Dropout(dropout, name=f"block{i + 1}_dropout1")(attended)]))
    y = layers.Dense(ffn_dim, activation="gelu", name=f"block{i + 1}_ffn1")(x)
    y = layers.Dense(embedding_dim, name=f"block{i + 1}_ffn2")(y)
    x = layers.LayerNormalization(name=f"block{i + 1}_norm2")(
        layers.Add(name=f"block{i + 1}_add2")(
            [x, layers.Dropout(dropout, name=f"block{i + 1}_dropout2")(y)]))
  x = MaskedMeanPooling(name="features")([x, mask])
  x = layers.Dropout(dropout, name="dropout")(x)
  logits = layers.Dense(num_classes, name="logits")(x)
  return tf_keras.Model(inputs, logits, name=name)


def text_ensemble(num_classes: int, input_shape: Sequence[int], vocab_size: int = 0,
                  members: Sequence[str] = ("text_bilstm", "text_cnn"), member_kwargs=None,
                  normalization=None, name: str = "text_ensemble") -> tf_keras.Model:
  """Teacher: several text models on the same ids, their logits averaged.

  Args:
    num_classes: size of the logits.
    input_shape: (max_length,).
    vocab_size: rows of each member's embedding table.
    members: names in `TEXT_MODELS` (an ensemble cannot hold an ensemble).
    member_kwargs: one dict of builder arguments per member (default: none).
    normalization: ignored.
    name: model name.

  Returns:
    A functional `tf_keras.Model` whose `logits` layer averages the members'
    logits (the members are nested models, named `member<i>_<name>`). It has no
    `features` layer: use it with logit losses ('soft', 'logits'), not feature losses.
  """
  del normalization
  inputs = _inputs(input_shape, vocab_size, name)
  member_kwargs = list(member_kwargs or [{}] * len(members))
  unknown = [m for m in members if m not in TEXT_MODELS or m == "text_ensemble"]
  if len(member_kwargs) != len(members) or unknown:
    raise ValueError(f"text_ensemble needs one member_kwargs dict per member, each member one of "
                      f"{sorted(set(TEXT_MODELS) - {'text_ensemble'})}: got members={list(members)}, "
                      f"{len(member_kwargs)} member_kwargs.")
  logits = []
  for i, (member, kwargs) in enumerate(zip(members, member_kwargs)):
    model = TEXT_MODELS[member](num_classes, input_shape, vocab_size=vocab_size,
                                name=f"member{i + 1}_{member}", **dict(kwargs))
    logits.append(model(inputs))
  mean = layers.Average(name="logits")(logits)
  return tf_keras.Model(inputs, mean, name=name)


TEXT_MODELS = {
    "text_cnn": text_cnn,
    "text_dcnn": text_dcnn,
    "text_bilstm": text_bilstm,
    "text_transformer": text_transformer,
    "text_ensemble": text_ensemble,
}
