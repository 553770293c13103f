"""Image classifiers for teachers and students, built by name (`build_model`).

Every model takes raw pixels in [0, 255] (normalisation is its first layer) and
returns logits from a Dense layer named `logits`. Named intermediate layers
(`stage1`..`stage3`, `features`) are the hook points for feature distillation.
All layers are ones TFLite converts to full-integer int8 and TFLite Micro runs
(Conv2D, DepthwiseConv2D, Add, ReLU, AveragePooling2D, Dense, Sub/Mul).

The image builders take the Keras namespace to build with (`keras_module`,
default `tf_keras`), so the same architecture can be built in Keras 3 for a
like-for-like comparison (`bench/distill_speed.py`); tfkd itself trains Keras 2.

Example:
  model = build_model("resnet8", num_classes=10, input_shape=(32, 32, 3))
  keras3_model = build_model("resnet8", 10, (32, 32, 3), keras_module=keras)
"""

from typing import Optional, Sequence

import tf_keras

# Also registers the text models' custom layers, so their saved models load anywhere tfkd.models is.
from tfkd.text_models import TEXT_MODELS

layers = tf_keras.layers


def _conv_bn(x, filters, kernel_size, strides, name, relu=True, keras_module=tf_keras):
  layers = keras_module.layers
  x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                    kernel_initializer="he_normal", name=f"{name}_conv")(x)
  x = layers.BatchNormalization(name=f"{name}_bn")(x)
  return layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual_block(x, filters, strides, name, keras_module=tf_keras):
  """Basic block of He et al. (2016): two 3x3 convs and a shortcut, 1x1 conv if shapes change."""
  layers = keras_module.layers
  shortcut = x
  y = _conv_bn(x, filters, 3, strides, f"{name}_a", keras_module=keras_module)
  y = _conv_bn(y, filters, 3, 1, f"{name}_b", relu=False, keras_module=keras_module)
  if strides != 1 or x.shape[-1] != filters:
    shortcut = _conv_bn(x, filters, 1, strides, f"{name}_proj", relu=False,
                        keras_module=keras_module)
  return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))


def _stem(input_shape, normalization, name, keras_module=tf_keras):
  inputs = keras_module.Input(shape=input_shape, name="pixels")
  x = inputs
  if normalization is not None:
    mean, variance = normalization
    x = keras_module.layers.Normalization(mean=mean, variance=variance, name="normalize")(x)
  return inputs, x


def _head(inputs, x, num_classes, name, keras_module=tf_keras):
  x = keras_module.layers.GlobalAveragePooling2D(name="features")(x)
  logits = keras_module.layers.Dense(num_classes, name="logits")(x)
  return keras_module.Model(inputs, logits, name=name)


def resnet(depth: int, num_classes: int, input_shape: Sequence[int],
           filters: Sequence[int] = (16, 32, 64), normalization=None,
           name: Optional[str] = None, keras_module=tf_keras) -> tf_keras.Model:
  """CIFAR ResNet of depth 6n+2 (He et al. 2016; ResNet-8 as in MLPerf Tiny).

  Args:
    depth: 8, 20, 32, 56, ... (6n+2): n residual blocks in each of 3 stages.
    num_classes: size of the logits.
    input_shape: (height, width, channels).
    filters: filters of the three stages.
    normalization: (mean, variance) per channel, or None for no normalisation layer.
    name: model name; defaults to f"resnet{depth}".
    keras_module: the Keras namespace to build with: `tf_keras` or Keras 3's `keras`.

  Returns:
    A functional `keras_module.Model` mapping pixels to logits.
  """
  if (depth - 2) % 6:
    raise ValueError(f"ResNet depth={depth} is not 6n+2: use 8, 20, 32, 44, 56 or 110.")
  return resnet_stages(num_classes, input_shape, blocks=[(depth - 2) // 6] * len(filters),
                       filters=filters, normalization=normalization,
                       name=name or f"resnet{depth}", keras_module=keras_module)


def resnet_stages(num_classes: int, input_shape: Sequence[int],
                  blocks: Sequence[int] = (1, 1, 1), filters: Sequence[int] = (16, 32, 64),
                  normalization=None, name: str = "resnet",
                  keras_module=tf_keras) -> tf_keras.Model:
  """CIFAR ResNet with its own number of blocks and filters per stage (the search's family).

  Stage s > 1 starts with a stride-2 block; `resnet(8)` is `blocks=(1, 1, 1)`.

  Args:
    num_classes: size of the logits.
    input_shape: (height, width, channels).
    blocks: residual blocks of each stage (each at least 1).
    filters: filters of each stage (as many as `blocks`); the stem has the first stage's.
    normalization: (mean, variance) per channel, or None.
    name: model name.
    keras_module: the Keras namespace to build with.

  Returns:
    A functional `keras_module.Model` mapping pixels to logits.

  Example:
    resnet_stages(10, (32, 32, 3), blocks=(1, 2, 1), filters=(16, 24, 48))
  """
  if len(blocks) != len(filters) or min(blocks) < 1:
    raise ValueError(f"resnet_stages needs one block count (>= 1) per stage: blocks={blocks}, "
                     f"filters={filters}.")
  inputs, x = _stem(input_shape, normalization, name, keras_module)
  x = _conv_bn(x, filters[0], 3, 1, "stem", keras_module=keras_module)
  for stage, (stage_blocks, stage_filters) in enumerate(zip(blocks, filters)):
    for block in range(stage_blocks):
      strides = 2 if stage > 0 and block == 0 else 1
      x = _residual_block(x, stage_filters, strides, f"s{stage + 1}b{block + 1}", keras_module)
    x = keras_module.layers.Activation("linear", name=f"stage{stage + 1}")(x)
  return _head(inputs, x, num_classes, name, keras_module)


def ds_cnn(num_classes: int, input_shape: Sequence[int],
           filters: Sequence[int] = (32, 64, 128, 128), strides: Sequence[int] = (1, 2, 2, 1),
           normalization=None, name: str = "ds_cnn", keras_module=tf_keras) -> tf_keras.Model:
  """Mobile-style student: a conv stem then depthwise-separable blocks (MobileNet v1 style).

  Args:
    num_classes: size of the logits.
    input_shape: (height, width, channels).
    filters: pointwise filters of each separable block.
    strides: depthwise stride of each block.
    normalization: (mean, variance) per channel, or None.
    name: model name.
    keras_module: the Keras namespace to build with: `tf_keras` or Keras 3's `keras`.

  Returns:
    A functional `keras_module.Model` mapping pixels to logits.
  """
  layers = keras_module.layers
  inputs, x = _stem(input_shape, normalization, name, keras_module)
  x = _conv_bn(x, filters[0], 3, 1, "stem", keras_module=keras_module)
  for i, (f, s) in enumerate(zip(filters, strides)):
    x = layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False,
                               name=f"ds{i + 1}_dw")(x)
    x = layers.BatchNormalization(name=f"ds{i + 1}_dw_bn")(x)
    x = layers.ReLU(name=f"ds{i + 1}_dw_relu")(x)
    x = _conv_bn(x, f, 1, 1, f"ds{i + 1}_pw", keras_module=keras_module)
    # Stage marks match the ResNets' so feature hints can name the same layers.
    if i >= 1:
      x = layers.Activation("linear", name=f"stage{i}")(x)
  return _head(inputs, x, num_classes, name, keras_module)


def _inverted_residual(x, filters, expansion, strides, name, keras_module=tf_keras):
  """MobileNetV2 block (Sandler et al. 2018): 1x1 expand, 3x3 depthwise, linear 1x1 project."""
  layers = keras_module.layers
  y = x
  if expansion != 1:
    y = _conv_bn(y, x.shape[-1] * expansion, 1, 1, f"{name}_expand", keras_module=keras_module)
  y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                             name=f"{name}_dw")(y)
  y = layers.BatchNormalization(name=f"{name}_dw_bn")(y)
  y = layers.ReLU(name=f"{name}_dw_relu")(y)
  y = _conv_bn(y, filters, 1, 1, f"{name}_project", relu=False, keras_module=keras_module)
  if strides == 1 and x.shape[-1] == filters:
    y = layers.Add(name=f"{name}_add")([x, y])
  return y


def mobilenet_v2(num_classes: int, input_shape: Sequence[int], width_multiplier: float = 1.0,
                 expansion: int = 6, blocks: Sequence[int] = (1, 2, 2),
                 filters: Sequence[int] = (16, 32, 64), normalization=None,
                 name: str = "mobilenet_v2", keras_module=tf_keras) -> tf_keras.Model:
  """MobileNetV2-style student for small images: inverted residual stages, width multiplier.

  A stride-1 3x3 stem, then one stage per entry of `blocks`, the first of each
  stage after the first with stride 2 (CIFAR-size inputs keep their resolution
  early, as in the CIFAR variants of MobileNetV2).

  Args:
    num_classes: size of the logits.
    input_shape: (height, width, channels).
    width_multiplier: scales every stage's filters (rounded to a multiple of 8, at least 8).
    expansion: channel expansion inside each block.
    blocks: inverted residual blocks of each stage.
    filters: output filters of each stage before `width_multiplier`.
    normalization: (mean, variance) per channel, or None.
    name: model name.
    keras_module: the Keras namespace to build with.

  Returns:
    A functional `keras_module.Model` mapping pixels to logits.

  Example:
    mobilenet_v2(10, (32, 32, 3), width_multiplier=0.5, expansion=4, blocks=(1, 2, 2))
  """
  if len(blocks) != len(filters) or min(blocks) < 1:
    raise ValueError(f"mobilenet_v2 needs one block count (>= 1) per stage: blocks={blocks}, "
                     f"filters={filters}.")
  scaled = [max(8, int(round(f * width_multiplier / 8)) * 8) for f in filters]
  inputs, x = _stem(input_shape, normalization, name, keras_module)
  x = _conv_bn(x, scaled[0], 3, 1, "stem", keras_module=keras_module)
  for stage, (stage_blocks, stage_filters) in enumerate(zip(blocks, scaled)):
    for block in range(stage_blocks):
      strides = 2 if stage > 0 and block == 0 else 1
      x = _inverted_residual(x, stage_filters, expansion, strides, f"s{stage + 1}b{block + 1}",
                             keras_module)
    x = keras_module.layers.Activation("linear", name=f"stage{stage + 1}")(x)
  return _head(inputs, x, num_classes, name, keras_module)


MODELS = {
    "resnet8": lambda **kw: resnet(8, **kw),
    "resnet20": lambda **kw: resnet(20, **kw),
    "resnet32": lambda **kw: resnet(32, **kw),
    "resnet56": lambda **kw: resnet(56, **kw),
    "resnet": resnet_stages,
    "ds_cnn": ds_cnn,
    "mobilenet_v2": mobilenet_v2,
}


def build_model(name: str, num_classes: int, input_shape: Sequence[int], normalization=None,
                keras_module=tf_keras, **kwargs) -> tf_keras.Model:
  """Builds a registered model by name (see `MODELS`).

  Args:
    name: a key of `MODELS` (e.g. "resnet8") or of `tfkd.text_models.TEXT_MODELS`.
    num_classes: size of the logits.
    input_shape: input shape without the batch dimension.
    normalization: (mean, variance) for the first layer, or None.
    keras_module: the Keras namespace to build with: `tf_keras` (what tfkd trains) or
      Keras 3's `keras` (image models only).
    **kwargs: passed to the builder (e.g. `filters`).

  Returns:
    An uncompiled `keras_module.Model`.
  """
  builders = {**MODELS, **TEXT_MODELS}  # text models take int32 token ids, ignore normalization
  if name not in builders:
    raise ValueError(f"Unknown model name={name!r}: choose one of {sorted(builders)}.")
  if name in MODELS:
    kwargs["keras_module"] = keras_module
  elif keras_module is not tf_keras:
    # Their custom layers are tf_keras layers.
    raise ValueError(f"Text model {name!r} builds with tf_keras only, not keras_module="
                     f"{getattr(keras_module, '__name__', keras_module)}.")
  return builders[name](num_classes=num_classes, input_shape=tuple(input_shape),
                        normalization=normalization, **kwargs)
