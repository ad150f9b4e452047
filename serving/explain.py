"""Where a model looks: Grad-CAM (Selvaraju et al. 2017) on the last convolutional feature map.

    cams, classes = grad_cam(explainer(model), preprocessed_images)   # [N, h, w] in [0, 1]

The map of an image is the head's feature map (the last 1x1 convolution, after its batch norm
and activation) weighted by the gradient of the predicted class's logit, averaged over the
map, then rectified and scaled to a peak of 1.
"""

from __future__ import annotations

import keras
import tensorflow as tf

FEATURE_LAYER = "head"  # efficientnetv2.get_model's last convolutional block


def explainer(model: keras.Model) -> keras.Model:
    """A model sharing `model`'s layers whose outputs are (the head's feature map, logits)."""
    return keras.Model(model.input, [model.get_layer(FEATURE_LAYER).output, model.output],
                       name=f"{model.name}_explainer")


def grad_cam(explaining: keras.Model, images) -> tuple[tf.Tensor, tf.Tensor]:
    """([N, h, w] Grad-CAM maps in [0, 1], [N] predicted class ids) of preprocessed images,
    for each image's top class (channels-last feature maps)."""
    with tf.GradientTape() as tape:
        features, logits = explaining(images, training=False)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        scores = tf.gather(tf.cast(logits, tf.float32), predicted, batch_dims=1)
    gradients = tf.cast(tape.gradient(scores, features), tf.float32)
    weights = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
    cams /= tf.reduce_max(cams, axis=[1, 2], keepdims=True) + 1e-12
    return cams, predicted
