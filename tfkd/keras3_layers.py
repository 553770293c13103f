"""tf_keras twins of what Keras 3 models use and tf_keras lacks: activations, layers, operations.

`tfkd.keras3_files` rebuilds a Keras 3 model in tf_keras from its config. Keras's own layers
have tf_keras counterparts; these do not:

- activations Keras 3 added (`hard_silu`, MobileNetV3's, and others) or defines otherwise
  (Keras 3's `hard_sigmoid` is `relu6(x + 3) / 6`, tf_keras's `clip(0.2 x + 0.5, 0, 1)`);
- layers `keras.applications` defines for its own models: ConvNeXt's `LayerScale` and
  `StochasticDepth`, Inception-ResNet-v2's `CustomScaleLayer`;
- operations between layers (`x + 2 * y`, `keras.ops.mean(x, axis=1)`, `x[:, 0]`):
  `KerasOperation` runs Keras 3's own operation on TensorFlow tensors.

Each is registered as serializable under the `tfkd>` prefix, so a rebuilt model saves and
loads (wherever `tfkd` is imported) like any tf_keras model.

Example:
  tf_keras.layers.Activation(keras3_layers.ACTIVATIONS["hard_silu"])
"""

import importlib

import tensorflow as tf
import tf_keras

_register = tf_keras.saving.register_keras_serializable(package="tfkd")


def _activation(name: str):
  """A decorator that registers a function as the tf_keras activation `tfkd>name`."""
  return tf_keras.saving.register_keras_serializable(package="tfkd", name=name)


# Keras 3's definitions (keras/src/backend/tensorflow/nn.py), default arguments included.
@_activation("hard_sigmoid")
def hard_sigmoid(x):
  return tf.nn.relu6(x + 3.0) / 6.0


@_activation("hard_silu")
def hard_silu(x):
  return x * hard_sigmoid(x)


@_activation("hard_tanh")
def hard_tanh(x):
  return tf.clip_by_value(x, -1.0, 1.0)


@_activation("log_sigmoid")
def log_sigmoid(x):
  return tf.math.log_sigmoid(x)


@_activation("celu")
def celu(x):
  return tf.maximum(x, 0.0) + tf.math.expm1(tf.minimum(x, 0.0))


@_activation("glu")
def glu(x):
  first, second = tf.split(x, 2, axis=-1)
  return first * tf.sigmoid(second)


@_activation("hard_shrink")
def hard_shrink(x):
  return tf.where(tf.abs(x) > 0.5, x, tf.zeros_like(x))


@_activation("soft_shrink")
def soft_shrink(x):
  return tf.sign(x) * tf.nn.relu(tf.abs(x) - 0.5)


@_activation("tanh_shrink")
def tanh_shrink(x):
  return x - tf.tanh(x)


@_activation("squareplus")
def squareplus(x):
  return (x + tf.sqrt(tf.square(x) + 4.0)) / 2.0


@_activation("sparse_plus")
def sparse_plus(x):
  return tf.where(x <= -1.0, tf.zeros_like(x), tf.where(x < 1.0, 0.25 * tf.square(x + 1.0), x))


@_activation("sparse_sigmoid")
def sparse_sigmoid(x):
  return tf.clip_by_value(0.5 * (x + 1.0), 0.0, 1.0)


# Keras 3 activation name → the registered name of its tf_keras twin. Names missing here mean
# the same in both Kerases (or are missing from tf_keras, which then says so).
ACTIVATIONS = {name: f"tfkd>{name}" for name in (
    "hard_sigmoid", "hard_silu", "hard_tanh", "log_sigmoid", "celu", "glu", "hard_shrink",
    "soft_shrink", "tanh_shrink", "squareplus", "sparse_plus", "sparse_sigmoid")}
ACTIVATIONS["hard_swish"] = "tfkd>hard_silu"  # Keras 3's alias


@_register
class LayerScale(tf_keras.layers.Layer):
  """ConvNeXt's per-channel scale of a residual branch (`keras.applications.convnext`).

  Args:
    init_values: the scale's initial value.
    projection_dim: channels.
  """

  def __init__(self, init_values: float, projection_dim: int, **kwargs):
    super().__init__(**kwargs)
    self.init_values, self.projection_dim = init_values, projection_dim

  def build(self, input_shape):
    self.gamma = self.add_weight(
        name="gamma", shape=(self.projection_dim,),
        initializer=tf_keras.initializers.Constant(self.init_values))
    super().build(input_shape)

  def call(self, x):
    return x * self.gamma

  def get_config(self):
    return {**super().get_config(), "init_values": self.init_values,
            "projection_dim": self.projection_dim}


@_register
class StochasticDepth(tf_keras.layers.Layer):
  """ConvNeXt's drop path: in training, drops a whole example's residual branch.

  Args:
    drop_path_rate: the chance an example's branch is dropped (kept ones are scaled up).
  """

  def __init__(self, drop_path_rate: float, **kwargs):
    super().__init__(**kwargs)
    self.drop_path_rate = drop_path_rate

  def call(self, x, training=None):
    if not training or not self.drop_path_rate:
      return x
    keep = 1.0 - self.drop_path_rate
    shape = tf.concat([tf.shape(x)[:1], tf.ones([tf.rank(x) - 1], tf.int32)], 0)
    return x / keep * tf.floor(keep + tf.random.uniform(shape, dtype=x.dtype))

  def get_config(self):
    return {**super().get_config(), "drop_path_rate": self.drop_path_rate}


@_register
class ScaledResidual(tf_keras.layers.Layer):
  """Inception-ResNet-v2's `CustomScaleLayer`: `inputs[0] + scale * inputs[1]`.

  Args:
    scale: the residual branch's scale.
  """

  def __init__(self, scale: float, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale

  def call(self, inputs):
    return inputs[0] + inputs[1] * self.scale

  def get_config(self):
    return {**super().get_config(), "scale": self.scale}


# Keras 3 application layers (module, class) → their tf_keras twins.
APPLICATION_LAYERS = {
    ("keras.src.applications.convnext", "LayerScale"): LayerScale,
    ("keras.src.applications.convnext", "StochasticDepth"): StochasticDepth,
    ("keras.src.applications.inception_resnet_v2", "CustomScaleLayer"): ScaledResidual,
}


@_register
class KerasOperation(tf_keras.layers.Layer):
  """A Keras 3 operation between layers, computed by Keras 3 itself on TensorFlow tensors.

  A Keras 3 functional model holds `x + 2 * y`, `keras.ops.mean(x, axis=1)` or `x[:, 0]` as
  operations, not layers. This layer holds one: Keras 3's operation object, called on the
  layer's inputs by Keras 3's TensorFlow backend, so it computes what Keras 3 computes.
  Loading a model that holds it needs Keras 3 (TensorFlow 2.16+ installs it).

  Args:
    module: the operation's module, one of Keras's own (`keras.src.ops.numpy`, ...).
    operation: its class name (`Mean`).
    operation_config: its constructor's arguments (`{"axis": 1, "keepdims": False}`).
    arguments: the call's `{"args": [...], "kwargs": {...}}` as Keras 3 serializes them, each
      tensor replaced by `{"tfkd_input": i}`, the i-th of this layer's inputs.

  Example:
    KerasOperation("keras.src.ops.numpy", "Mean", {"axis": 1},
                   {"args": [{"tfkd_input": 0}], "kwargs": {}})([features])
  """

  def __init__(self, module: str, operation: str, operation_config: dict, arguments: dict,
               **kwargs):
    super().__init__(**kwargs)
    if not module.startswith("keras.src.ops."):  # never import what a file names elsewhere
      raise ValueError(f"module={module!r} is not one of Keras's operation modules.")
    self.module, self.operation = module, operation
    self.operation_config, self.arguments = operation_config, arguments
    self._operation = getattr(importlib.import_module(module), operation)(**operation_config)

  def call(self, inputs):
    from keras.saving import deserialize_keras_object  # pylint: disable=import-outside-toplevel
    inputs = tf.nest.flatten(inputs)  # a list of one comes back from a saved model unlisted

    def filled(value):
      if isinstance(value, dict) and set(value) == {"tfkd_input"}:
        return inputs[value["tfkd_input"]]
      if isinstance(value, dict) and "class_name" in value:  # a slice, an Ellipsis, an array
        return deserialize_keras_object(value)
      if isinstance(value, dict):
        return {k: filled(v) for k, v in value.items()}
      if isinstance(value, (list, tuple)):
        return [filled(v) for v in value]
      return value

    arguments = filled(self.arguments)
    return self._operation(*arguments["args"], **arguments["kwargs"])

  def get_config(self):
    return {**super().get_config(), "module": self.module, "operation": self.operation,
            "operation_config": self.operation_config, "arguments": self.arguments}
