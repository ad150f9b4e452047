"""The blocks of EfficientNet as pure Keras 3 layers: Stem, MBConv, Fused-MBConv, SE, Head.

A block knows its own block arguments and nothing about the model around it. Sub-layers are
created in the order they run, so the weight order matches keras.applications' models.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
from keras import ops

from efficientnetv2.block_strings import BlockArgs, decode_block_string, encode_block_string

# Variance scaling of the original: normal(0, sqrt(2 / fan_out)) for convolutions and
# uniform(-1/sqrt(classes), 1/sqrt(classes)) for the classifier.
CONV_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}
DENSE_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


@dataclasses.dataclass(frozen=True)
class LayerOptions:
    """Options shared by every block: activation, batch norm and data layout."""

    activation: str = "silu"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-3
    synchronized_bn: bool = False
    data_format: str = "channels_last"
    bn_type: str = "bn"  # bn: batch norm; gn: group norm of gn_groups groups
    gn_groups: int = 8
    conv_dropout: float = 0.0  # dropout after an expanding block's expansion
    local_pooling: bool = False  # pool whole maps with an average-pool op, not a mean

    @property
    def channel_axis(self) -> int:
        return -1 if self.data_format == "channels_last" else 1

    @property
    def spatial_axes(self) -> tuple[int, int]:
        return (1, 2) if self.data_format == "channels_last" else (2, 3)

    def conv(self, filters: int, kernel_size: int, strides: int = 1, name: str = "conv",
             use_bias: bool = False, activation: str | None = None) -> keras.layers.Conv2D:
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=use_bias,
            activation=activation, data_format=self.data_format,
            kernel_initializer=CONV_INITIALIZER, name=name)

    def depthwise_conv(self, kernel_size: int, strides: int, name: str) -> keras.layers.Layer:
        return keras.layers.DepthwiseConv2D(
            kernel_size, strides=strides, padding="same", use_bias=False,
            data_format=self.data_format, depthwise_initializer=CONV_INITIALIZER, name=name)

    def batch_norm(self, name: str, channels: int) -> keras.layers.Layer:
        """Batch norm, or with `bn_type` gn group norm (of gcd(gn_groups, channels) groups:
        a group count that divides the channels), as the original's `utils.normalization`."""
        if self.bn_type == "gn":
            return keras.layers.GroupNormalization(
                math.gcd(self.gn_groups, channels), axis=self.channel_axis,
                epsilon=self.bn_epsilon, name=name)
        return keras.layers.BatchNormalization(
            axis=self.channel_axis, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
            synchronized=self.synchronized_bn, name=name)

    def pool(self, x: Any, keepdims: bool = False) -> Any:
        """The mean over each feature map; with `local_pooling`, as an average pool whose
        window is the whole map where its size is known (an AvgPool op, as TFLite and the
        Edge TPU prefer; the original's `local_pooling`). The values are the same."""
        height, width = (x.shape[axis] for axis in self.spatial_axes)
        if not self.local_pooling or height is None or width is None:
            return ops.mean(x, axis=self.spatial_axes, keepdims=keepdims)
        pooled = ops.average_pool(x, (height, width), strides=1, padding="valid",
                                  data_format=self.data_format)
        return pooled if keepdims else ops.squeeze(pooled, self.spatial_axes)

    def act(self, x: Any) -> Any:
        return keras.activations.get(self.activation)(x)


def build_in_sequence(input_shape: tuple, *layers: keras.layers.Layer | None) -> tuple:
    """Builds each layer on the output shape of the one before; returns the last shape."""
    shape = input_shape
    for layer in layers:
        if layer is not None:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
    return shape


def _options(options: LayerOptions | dict | None) -> LayerOptions:
    if isinstance(options, LayerOptions):
        return options
    return LayerOptions(**(options or {}))


class _ConvBnAct(keras.layers.Layer):
    """Convolution, batch norm, activation: the shape of both Stem and Head."""

    kernel_size = 1
    strides = 1

    def __init__(self, filters: int, options: LayerOptions | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.options = _options(options)
        self.conv = self.options.conv(filters, self.kernel_size, self.strides, name="conv")
        self.bn = self.options.batch_norm("bn", filters)

    def build(self, input_shape):
        build_in_sequence(input_shape, self.conv, self.bn)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def call(self, inputs, training=None):
        return self.options.act(self.bn(self.conv(inputs), training=training))

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters,
                "options": dataclasses.asdict(self.options)}


@keras.saving.register_keras_serializable(package="efficientnetv2")
class Stem(_ConvBnAct):
    """3x3 convolution with stride 2 (or `strides`), batch norm, activation."""

    kernel_size = 3

    def __init__(self, filters: int, options: LayerOptions | dict | None = None,
                 strides: int = 2, **kwargs):
        self.strides = strides
        super().__init__(filters, options, **kwargs)

    def get_config(self) -> dict:
        return {**super().get_config(), "strides": self.strides}


@keras.saving.register_keras_serializable(package="efficientnetv2")
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation: global pool, reduce, activation, expand, sigmoid gate."""

    def __init__(self, reduced_filters: int, output_filters: int,
                 options: LayerOptions | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.reduced_filters = reduced_filters
        self.output_filters = output_filters
        self.options = _options(options)
        self.reduce = self.options.conv(reduced_filters, 1, use_bias=True,
                                        activation=self.options.activation, name="reduce")
        self.expand = self.options.conv(output_filters, 1, use_bias=True,
                                        activation="sigmoid", name="expand")

    def build(self, input_shape):
        pooled = list(input_shape)
        for axis in self.options.spatial_axes:
            pooled[axis] = 1
        build_in_sequence(tuple(pooled), self.reduce, self.expand)

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        squeezed = self.options.pool(inputs, keepdims=True)
        return inputs * self.expand(self.reduce(squeezed))

    def get_config(self) -> dict:
        return {**super().get_config(), "reduced_filters": self.reduced_filters,
                "output_filters": self.output_filters,
                "options": dataclasses.asdict(self.options)}


@keras.saving.register_keras_serializable(package="efficientnetv2")
class StochasticDepth(keras.layers.Layer):
    """Drops the whole residual branch of a sample with probability 1 - survival_prob.

    Kept branches are divided by survival_prob during training, so inference is unchanged.
    """

    def __init__(self, survival_prob: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.survival_prob = survival_prob
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.survival_prob >= 1.0:
            return inputs
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, dtype=inputs.dtype, seed=self.seed_generator)
        keep = ops.floor(self.survival_prob + noise)
        return inputs / self.survival_prob * keep

    def get_config(self) -> dict:
        return {**super().get_config(), "survival_prob": self.survival_prob, "seed": self.seed}


class _Block(keras.layers.Layer):
    """What MBConv and Fused-MBConv share: arguments, SE, projection and the residual."""

    def __init__(self, block: BlockArgs | str, survival_prob: float | None = None,
                 options: LayerOptions | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.block = decode_block_string(block) if isinstance(block, str) else block
        self.survival_prob = survival_prob
        self.options = _options(options)
        self.expanded_filters = self.block.input_filters * self.block.expand_ratio
        self.has_residual = (self.block.id_skip and self.block.strides == 1
                             and self.block.input_filters == self.block.output_filters)

    def _make_se(self) -> SqueezeExcite | None:
        ratio = self.block.se_ratio
        if not ratio:
            return None
        reduced = max(1, int(self.block.input_filters * ratio))
        return SqueezeExcite(reduced, self.expanded_filters, self.options, name="se")

    def _make_conv_dropout(self) -> keras.layers.Dropout | None:
        """The original's `conv_dropout`: after the expansion of blocks that expand."""
        if self.options.conv_dropout and self.block.expand_ratio > 1:
            return keras.layers.Dropout(self.options.conv_dropout, name="conv_dropout")
        return None

    def _make_residual(self) -> StochasticDepth | None:
        if self.has_residual and self.survival_prob is not None and self.survival_prob < 1:
            return StochasticDepth(self.survival_prob, name="stochastic_depth")
        return None

    def build(self, input_shape):
        build_in_sequence(input_shape, *self._layers_in_order())

    def compute_output_shape(self, input_shape):
        shape = input_shape
        for layer in self._layers_in_order():
            if layer is not None:
                shape = layer.compute_output_shape(shape)
        return shape

    def _layers_in_order(self) -> tuple:
        raise NotImplementedError

    def _finish(self, inputs, x, training):
        if not self.has_residual:
            return x
        if self.drop is not None:
            x = self.drop(x, training=training)
        return x + inputs

    def get_config(self) -> dict:
        return {**super().get_config(), "block": encode_block_string(self.block),
                "survival_prob": self.survival_prob,
                "options": dataclasses.asdict(self.options)}


@keras.saving.register_keras_serializable(package="efficientnetv2")
class MBConv(_Block):
    """Inverted residual: 1x1 expand, depthwise kxk, SE, 1x1 project (no activation)."""

    def __init__(self, block, survival_prob=None, options=None, **kwargs):
        super().__init__(block, survival_prob, options, **kwargs)
        b, o = self.block, self.options
        self.expand_conv = self.expand_bn = None
        if b.expand_ratio != 1:
            self.expand_conv = o.conv(self.expanded_filters, 1, name="expand_conv")
            self.expand_bn = o.batch_norm("expand_bn", self.expanded_filters)
        self.depthwise_conv = o.depthwise_conv(b.kernel_size, b.strides, name="depthwise_conv")
        self.depthwise_bn = o.batch_norm("depthwise_bn", self.expanded_filters)
        self.conv_dropout = self._make_conv_dropout()
        self.se = self._make_se()
        self.project_conv = o.conv(b.output_filters, 1, name="project_conv")
        self.project_bn = o.batch_norm("project_bn", b.output_filters)
        self.drop = self._make_residual()

    def _layers_in_order(self) -> tuple:
        return (self.expand_conv, self.expand_bn, self.depthwise_conv, self.depthwise_bn,
                self.se, self.project_conv, self.project_bn)

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self.options.act(self.expand_bn(self.expand_conv(x), training=training))
        x = self.options.act(self.depthwise_bn(self.depthwise_conv(x), training=training))
        if self.conv_dropout is not None:
            x = self.conv_dropout(x, training=training)
        if self.se is not None:
            x = self.se(x)
        x = self.project_bn(self.project_conv(x), training=training)
        return self._finish(inputs, x, training)


@keras.saving.register_keras_serializable(package="efficientnetv2")
class FusedMBConv(_Block):
    """Fused inverted residual: kxk expand conv, SE, 1x1 project.

    With expand ratio 1 the single kxk convolution goes straight to the output filters and
    is followed by batch norm and the activation.
    """

    def __init__(self, block, survival_prob=None, options=None, **kwargs):
        super().__init__(block, survival_prob, options, **kwargs)
        b, o = self.block, self.options
        self.expand_conv = self.expand_bn = None
        if b.expand_ratio != 1:
            self.expand_conv = o.conv(self.expanded_filters, b.kernel_size, b.strides,
                                      name="expand_conv")
            self.expand_bn = o.batch_norm("expand_bn", self.expanded_filters)
        self.conv_dropout = self._make_conv_dropout()
        self.se = self._make_se()
        if b.expand_ratio != 1:
            self.project_conv = o.conv(b.output_filters, 1, name="project_conv")
        else:
            self.project_conv = o.conv(b.output_filters, b.kernel_size, b.strides,
                                       name="project_conv")
        self.project_bn = o.batch_norm("project_bn", b.output_filters)
        self.drop = self._make_residual()

    def _layers_in_order(self) -> tuple:
        return (self.expand_conv, self.expand_bn, self.se, self.project_conv, self.project_bn)

    def call(self, inputs, training=None):
        x = inputs
        if self.expand_conv is not None:
            x = self.options.act(self.expand_bn(self.expand_conv(x), training=training))
        if self.conv_dropout is not None:
            x = self.conv_dropout(x, training=training)
        if self.se is not None:
            x = self.se(x)
        x = self.project_bn(self.project_conv(x), training=training)
        if self.expand_conv is None:
            x = self.options.act(x)
        return self._finish(inputs, x, training)


@keras.saving.register_keras_serializable(package="efficientnetv2")
class LocalPooling(keras.layers.Layer):
    """Global average pooling written as an average pool over the whole map (LayerOptions.pool)."""

    def __init__(self, options: LayerOptions | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.options = _options(options)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[self.options.channel_axis])

    def call(self, inputs):
        return self.options.pool(inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "options": dataclasses.asdict(self.options)}


@keras.saving.register_keras_serializable(package="efficientnetv2")
class Head(_ConvBnAct):
    """1x1 convolution to the feature size, batch norm, activation."""


def make_block(block: BlockArgs, survival_prob: float | None, options: LayerOptions,
               name: str) -> _Block:
    """The block layer (MBConv or Fused-MBConv) that `block` describes."""
    cls = FusedMBConv if block.fused else MBConv
    return cls(block, survival_prob=survival_prob, options=options, name=name)
