"""experiments/peer_fit.py: the peer's input pipeline (its training is a 7-minute benchmark)."""

import numpy as np

from efficientnetv2.experiments import peer_fit


def test_peer_pipeline_resizes_scales_and_pads_with_the_background():
    images = np.full((8, 28, 28, 1), 255, np.uint8)  # all white: any padding shows as -1
    labels = np.arange(8)
    test_images, test_labels = next(iter(peer_fit.dataset(images, labels, 32, 8, False)))
    assert test_images.shape == (8, 32, 32, 3)
    np.testing.assert_allclose(test_images.numpy(), 1.0, atol=1e-5)  # eval: no augmentation
    np.testing.assert_array_equal(test_labels.numpy(), labels)
    train_images = np.concatenate(
        [batch.numpy() for batch, _ in peer_fit.dataset(images, labels, 32, 8, True).repeat(4)])
    assert train_images.shape == (32, 32, 32, 3)
    assert train_images.min() == -1.0 and train_images.max() == 1.0  # black padding shows up
    assert np.isclose(train_images, -1.0).mean() < 0.25  # pad of 4 px at most on each side
