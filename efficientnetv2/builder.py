"""Builds a Keras model from block strings: width/depth rounding, per-block stochastic
depth, stem, blocks, head and classifier. Knows nothing about training."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Sequence

import keras

from efficientnetv2.block_strings import BlockArgs, decode_block_strings
from efficientnetv2.errors import UserError
from efficientnetv2.families import CUSTOM, Architecture, architecture
from efficientnetv2.layers import DENSE_INITIALIZER, Head, LayerOptions, LocalPooling, Stem, make_block

ACTIVATIONS = ("silu", "swish", "relu", "relu6", "gelu", "hard_silu", "hard_swish", "elu",
               "leaky_relu", "mish", "selu")
# the original's names for Keras activations (its `act_fn`)
ACTIVATION_ALIASES = {"silu_native": "silu", "swish_native": "silu", "hswish": "hard_silu"}
NORMALIZATIONS = ("bn", "gn", "tpu_bn")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Every architecture setting `get_model` accepts as an override."""

    blocks: tuple[str, ...]
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    dropout_rate: float = 0.2
    survival_prob: float | None = 0.8
    activation: str = "silu"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-3
    synchronized_bn: bool = False
    data_format: str = "channels_last"
    feature_size: int = 1280
    depth_divisor: int = 8
    min_depth: int = 8
    stem_stride: int = 2
    # bn, gn (group normalization) or tpu_bn (batch norm synchronized across replicas), as
    # the original's bn_type
    bn_type: str = "bn"
    gn_groups: int = 8  # groups of gn (gcd with each layer's channels)
    conv_dropout: float = 0.0  # dropout after the expansion of expanding blocks
    local_pooling: bool = False  # whole-map average-pool ops instead of means (same values)
    headbias: float = 0.0  # the classifier's initial bias

    @property
    def layer_options(self) -> LayerOptions:
        return LayerOptions(ACTIVATION_ALIASES.get(self.activation, self.activation),
                            self.bn_momentum, self.bn_epsilon,
                            self.synchronized_bn or self.bn_type == "tpu_bn", self.data_format,
                            "gn" if self.bn_type == "gn" else "bn", self.gn_groups,
                            self.conv_dropout, self.local_pooling)

    def validate(self) -> None:
        decode_block_strings(list(self.blocks))
        if self.activation not in ACTIVATIONS + tuple(ACTIVATION_ALIASES):
            raise UserError(f"unknown activation {self.activation!r}; use one of "
                            f"{', '.join(ACTIVATIONS + tuple(ACTIVATION_ALIASES))}")
        if self.bn_type not in NORMALIZATIONS:
            raise UserError(f"bn_type {self.bn_type!r} must be bn (batch norm), gn (group norm) "
                            "or tpu_bn (batch norm synchronized across replicas)")
        if self.gn_groups < 1:
            raise UserError(f"gn_groups {self.gn_groups} must be 1 or more")
        if not 0 <= self.conv_dropout < 1:
            raise UserError(f"conv_dropout {self.conv_dropout} must be in [0, 1)")
        if self.data_format not in ("channels_last", "channels_first"):
            raise UserError(f"data_format {self.data_format!r} must be channels_last or channels_first")
        if not 0 <= self.dropout_rate < 1:
            raise UserError(f"dropout_rate {self.dropout_rate} must be in [0, 1)")
        if self.survival_prob is not None and not 0 < self.survival_prob <= 1:
            raise UserError(f"survival_prob {self.survival_prob} must be in (0, 1] (or None)")
        if self.width_coefficient <= 0 or self.depth_coefficient <= 0:
            raise UserError("width_coefficient and depth_coefficient must be positive")
        if self.stem_stride not in (1, 2):
            raise UserError(f"stem_stride {self.stem_stride} must be 1 or 2")


OVERRIDES = tuple(f.name for f in dataclasses.fields(ModelOptions))


def round_filters(filters: int, width_coefficient: float, depth_divisor: int = 8,
                  min_depth: int = 8) -> int:
    """Scales a width and rounds it to a multiple of `depth_divisor` (no 90% correction)."""
    scaled = filters * width_coefficient
    return int(max(min_depth or depth_divisor,
                   int(scaled + depth_divisor / 2) // depth_divisor * depth_divisor))


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Scales the number of repeats of a stage, rounding up."""
    return int(math.ceil(depth_coefficient * repeats))


def scaled_blocks(options: ModelOptions) -> list[BlockArgs]:
    """One `BlockArgs` per block (repeats expanded) with scaled, rounded widths.

    After the first block of a stage, input filters equal output filters and stride is 1.
    """
    def width(filters: int) -> int:
        return round_filters(filters, options.width_coefficient, options.depth_divisor,
                             options.min_depth)

    blocks = []
    for stage in decode_block_strings(list(options.blocks)):
        first = dataclasses.replace(stage, input_filters=width(stage.input_filters),
                                    output_filters=width(stage.output_filters), repeats=1)
        blocks.append(first)
        rest = dataclasses.replace(first, input_filters=first.output_filters, strides=1)
        blocks.extend([rest] * (round_repeats(stage.repeats, options.depth_coefficient) - 1))
    return blocks


def survival_probability(survival_prob: float | None, index: int, num_blocks: int) -> float | None:
    """The linear rule: block i of N keeps its branch with 1 - (1 - p) * i / N."""
    if survival_prob is None:
        return None
    return 1.0 - (1.0 - survival_prob) * index / num_blocks


def resolve_options(model_name: str | Sequence[str], overrides: dict) -> tuple[str, ModelOptions]:
    """Model name (or 'custom') and the full options of a name or list of block strings."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        hints = {k: difflib.get_close_matches(k, OVERRIDES, 1) for k in unknown}
        hint = "; ".join(f"{k!r}" + (f" (did you mean {v[0]!r}?)" if v else "") for k, v in hints.items())
        raise UserError(f"unknown model option {hint}; valid options: {', '.join(OVERRIDES)}")
    if isinstance(model_name, str):
        arch = architecture(model_name)
    else:
        arch = Architecture(tuple(model_name))
        model_name = CUSTOM
    base = {"blocks": arch.blocks, "width_coefficient": arch.width_coefficient,
            "depth_coefficient": arch.depth_coefficient, "dropout_rate": arch.dropout_rate}
    given = {k: v for k, v in overrides.items() if v is not None or k == "survival_prob"}
    if "blocks" in given:
        given["blocks"] = tuple(given["blocks"])
    options = ModelOptions(**{**base, **given})
    options.validate()
    return model_name, options


def build_model(options: ModelOptions, num_classes: int = 1000, include_top: bool = True,
                input_shape: tuple | None = None, pooling: str | None = None,
                name: str = "efficientnet") -> keras.Model:
    """The functional Keras model for `options` (inputs normalised by `preprocess_input`)."""
    if include_top and (not isinstance(num_classes, int) or num_classes < 1):
        raise UserError(f"num_classes must be a positive integer, got {num_classes!r}")
    if pooling not in (None, "avg", "max"):
        raise UserError(f"pooling {pooling!r} must be None, 'avg' or 'max'")
    layer_options = options.layer_options
    if input_shape is None:
        input_shape = (None, None, 3) if options.data_format == "channels_last" else (3, None, None)
    blocks = scaled_blocks(options)

    inputs = keras.Input(shape=input_shape, name="image")
    x = Stem(blocks[0].input_filters, layer_options, strides=options.stem_stride,
             name="stem")(inputs)  # widths already scaled
    for index, block in enumerate(blocks):
        survival = survival_probability(options.survival_prob, index, len(blocks))
        x = make_block(block, survival, layer_options, name=f"blocks_{index}")(x)
    feature_size = round_filters(options.feature_size, options.width_coefficient,
                                 options.depth_divisor, options.min_depth)
    x = Head(feature_size, layer_options, name="head")(x)
    if include_top:
        x = _pooling(options)(x)
        if options.dropout_rate > 0:
            x = keras.layers.Dropout(options.dropout_rate, name="top_dropout")(x)
        x = keras.layers.Dense(num_classes, kernel_initializer=DENSE_INITIALIZER,
                               bias_initializer=keras.initializers.Constant(options.headbias),
                               dtype="float32", name="predictions")(x)
    elif pooling == "avg":
        x = _pooling(options)(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(data_format=options.data_format, name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def _pooling(options: ModelOptions) -> keras.layers.Layer:
    """The head's global average pool (a whole-map average-pool op with `local_pooling`)."""
    if options.local_pooling:
        return LocalPooling(options.layer_options, name="avg_pool")
    return keras.layers.GlobalAveragePooling2D(data_format=options.data_format, name="avg_pool")


def feature_endpoints(model: keras.Model) -> dict[str, keras.KerasTensor]:
    """Outputs at each reduction level: `reduction_1` (stride 2) ... `reduction_5` (stride 32).

    `reduction_i` (stride 2**i, counting the stem's) is the output of the last block before a
    strided block (or the last block); works on any model `get_model` built, also after
    saving and loading.
    """
    blocks = [layer for layer in model.layers if layer.name.startswith("blocks_")]
    level = int(math.log2(model.get_layer("stem").strides))
    endpoints = {}
    for index, layer in enumerate(blocks):
        level += int(math.log2(layer.block.strides))
        last = index + 1 == len(blocks)
        if last or blocks[index + 1].block.strides > 1:
            endpoints[f"reduction_{level}"] = layer.output
    return endpoints


def feature_extractor(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers and weights whose outputs are the feature endpoints."""
    return keras.Model(model.input, feature_endpoints(model), name=f"{model.name}_features")
