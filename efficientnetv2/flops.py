"""Multiply-adds of a model's convolutions and matrix products, read from its traced graph.

This is the convention of the paper's FLOPs column: one multiply-add counts once, and
element-wise work (batch norm, activations, pooling) is not counted.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def _conv_multiply_adds(op: tf.Operation) -> int:
    out = op.outputs[0].shape.as_list()
    kernel = op.inputs[1].shape.as_list()
    channels_first = op.get_attr("data_format") == b"NCHW"
    spatial = out[2] * out[3] if channels_first else out[1] * out[2]
    return out[0] * spatial * int(np.prod(kernel))


def _matmul_multiply_adds(op: tf.Operation) -> int:
    a = op.inputs[0].shape.as_list()
    b = op.inputs[1].shape.as_list()
    n = b[-2] if op.get_attr("transpose_b") else b[-1]
    return int(np.prod(a)) * n


_COUNTERS = {
    "Conv2D": _conv_multiply_adds,
    "DepthwiseConv2dNative": _conv_multiply_adds,
    "MatMul": _matmul_multiply_adds,
}


def count_multiply_adds(model: keras.Model, image_size: int) -> int:
    """Multiply-adds for one image of `image_size` x `image_size` in inference mode."""
    shape = list(model.inputs[0].shape)
    shape[0] = 1
    channel_axis = 1 if shape[1] == 3 and shape[-1] != 3 else -1
    spatial = [i for i in range(1, 4) if i != channel_axis % 4]
    for axis in spatial:
        shape[axis] = image_size
    shape[channel_axis] = shape[channel_axis] or 3
    forward = tf.function(lambda x: model(x, training=False))
    graph = forward.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    return sum(_COUNTERS[op.type](op) for op in graph.get_operations() if op.type in _COUNTERS)
