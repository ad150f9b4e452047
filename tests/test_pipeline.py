import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from conftest import data_config

from efficientnetv2.datasets import Augmentation, DataInput, Share
from efficientnetv2.datasets.preprocessing import center_crop, normalize, recipe_for
from efficientnetv2.training.progressive import all_stages


@pytest.fixture
def train_data(idx_dir):
    return DataInput(data_config().data, "train", True, data_dir=str(idx_dir), seed=5)


def test_shapes_dtypes_and_ranges_at_every_stage(train_data):
    config = data_config()
    for stage in all_stages(config):
        aug = Augmentation("randaug", 2, stage.ram, 0.2, 0.2)
        images, labels = next(iter(train_data.dataset(8, stage.image_size, aug)))
        assert images.shape == (8, stage.image_size, stage.image_size, 3)
        assert images.dtype == tf.float32 and labels.dtype == tf.float32
        low, high = (normalize(tf.constant(v, tf.float32), config.data.normalization).numpy()
                     for v in (0.0, 255.0))
        assert (images.numpy().min((0, 1, 2)) >= low - 1e-5).all()
        assert (images.numpy().max((0, 1, 2)) <= high + 1e-5).all()
    assert [s.image_size for s in all_stages(config)] == [40, 48, 56, 64]


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0), (0.5, 0.5)])
def test_mixed_labels_sum_to_one_and_are_mixed(train_data, mixup, cutmix):
    aug = Augmentation("none", 2, 0, mixup, cutmix)
    _, labels = next(iter(train_data.dataset(16, 32, aug)))
    labels = labels.numpy()
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
    assert (labels.max(1) < 0.999).any()  # some labels really are mixtures


def test_shards_are_disjoint_and_cover_the_split(idx_dir):
    config = data_config(hparam_str="data.crop_padding=0")
    full = DataInput(config.data, "eval", False, data_dir=str(idx_dir))
    everything = next(iter(full.dataset(100, 28)))[0].numpy()
    shards = []
    for pipeline_id in range(3):
        context = tf.distribute.InputContext(3, pipeline_id, 1)
        shards.append(np.concatenate([b[0].numpy() for b in full.dataset(7, 28, input_context=context)]))
    keys = [{s.tobytes() for s in shard} for shard in shards]
    assert all(not (keys[i] & keys[j]) for i in range(3) for j in range(i + 1, 3))
    assert set().union(*keys) == {s.tobytes() for s in everything}
    assert sum(len(s) for s in shards) == 20


def test_same_seed_same_images_other_seed_other_images(idx_dir):
    def first(seed):
        data = DataInput(data_config().data, "train", True, data_dir=str(idx_dir), seed=seed)
        return next(iter(data.dataset(8, 32, Augmentation("randaug", 2, 10))))[0].numpy()
    np.testing.assert_array_equal(first(1), first(1))
    assert not np.array_equal(first(1), first(2))


def test_every_augmentation_runs(train_data):
    for name in ("randaug", "autoaug", "ra_aa", "ft", "none"):
        images, _ = next(iter(train_data.dataset(4, 32, Augmentation(name, 2, 15))))
        assert images.shape == (4, 32, 32, 3)


def test_eval_center_crop_rule():
    photo = tf.zeros([400, 600, 3], tf.uint8)  # ImageNet-sized: the original's crop
    assert center_crop(photo, 224, 32).shape[:2] == (350, 350)  # 224 / 256 * 400
    assert center_crop(photo, 380, 32).shape[:2] == (380, 380)  # 365 would cut into 380
    small = tf.zeros([32, 40, 3], tf.uint8)  # small images are seen whole
    assert center_crop(small, 32, 32).shape[:2] == (32, 32)
    assert center_crop(small, 224, 32).shape[:2] == (32, 32)
    default, v1 = (recipe_for(data_config(hparam_str=f"data.augname={a}").data)
                   for a in ("randaug", "effnetv1_autoaug"))
    assert default.eval_image(photo, 384).shape == v1.eval_image(photo, 384).shape
    # the default recipe stops cropping from 320 px up, V1 crops at every size
    np.testing.assert_allclose(default.eval_image(tf.ones([400, 400, 3]) * 7, 384).numpy(),
                               normalize(tf.ones([384, 384, 3]) * 7, "scale_128").numpy())


def test_skip_continues_exactly_where_a_pipeline_stopped(train_data):
    """Resume: skipping n examples yields what the uninterrupted pipeline yielded next."""
    aug = Augmentation("randaug", 2, 10, 0.5, 0.5)
    whole = [b for _, b in zip(range(7), train_data.dataset(8, 32, aug, seed=3))]
    resumed = [b for _, b in zip(range(2), train_data.dataset(8, 32, aug, seed=3, skip=5 * 8))]
    for (a_images, a_labels), (b_images, b_labels) in zip(whole[5:], resumed):
        np.testing.assert_array_equal(a_images.numpy(), b_images.numpy())
        np.testing.assert_array_equal(a_labels.numpy(), b_labels.numpy())
    assert not np.array_equal(whole[0][0].numpy(), whole[5][0].numpy())


def test_max_examples_keeps_the_first_examples(idx_dir):
    config = data_config(hparam_str="data.max_train_examples=12,data.max_eval_examples=5")
    train = DataInput(config.data, "train", True, data_dir=str(idx_dir))
    evaluation = DataInput(config.data, "eval", False, data_dir=str(idx_dir))
    assert (train.num_examples, evaluation.num_examples) == (12, 5)
    assert sum(len(b[0]) for b in evaluation.dataset(2, 28)) == 5


def test_augname_none_from_the_command_line(idx_dir):
    config = data_config(hparam_str="data.augname=none")  # parsed as the literal None
    train = DataInput(config.data, "train", True, data_dir=str(idx_dir))
    assert train.augmentation().augname == "none"


def _keys(dataset, count):
    return [image.numpy().tobytes() for _, (image, _) in dataset.take(count)]


def test_every_epoch_is_a_new_permutation_and_resume_skips_whole_epochs(train_data):
    """Training order: each epoch shows every example once, in its own order; a resume late
    in a run starts at its position without reading the epochs before it."""
    whole = _keys(train_data.examples(3), 3 * 40)
    epochs = [whole[i * 40:(i + 1) * 40] for i in range(3)]
    split = {image.numpy().tobytes() for image, _ in train_data.source.dataset}
    assert all(len(e) == 40 and set(e) == split for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    reads = []

    def counted(image, label):
        tf.py_function(lambda: reads.append(1), [], [])
        return image, label
    train_data.source = dataclasses.replace(train_data.source, read_item=counted)
    assert _keys(train_data.examples(3, 2 * 40 + 7), 10) == whole[87:97]
    assert len(reads) == 10  # nothing before the position was read
    # two workers, each with blocks of 3: together the one-device order, block by block,
    # each reading only its own examples
    reads.clear()
    shares = [_keys(train_data.examples(3, 2 * 40 + 4, Share(2, i, 3)), 6) for i in range(2)]
    assert shares[0][:3] + shares[1][:3] + shares[0][3:] + shares[1][3:] == whole[84:96]
    assert len(reads) == 12


def test_record_files_epochs_are_permutations_and_resume_inside_one_epoch(tmp_path):
    """TFRecord sources: a per-epoch order of the files, then the shuffle buffer."""
    from test_registry import _feature, _jpeg

    for f in range(4):
        with tf.io.TFRecordWriter(str(tmp_path / f"train-{f:05d}")) as writer:
            for i in range(5):
                example = {"image/encoded": _feature(_jpeg(f * 5 + i)),
                           "image/class/label": _feature([f * 5 + i + 1])}
                writer.write(tf.train.Example(features=tf.train.Features(feature=example))
                             .SerializeToString())
    data = DataInput(data_config("imagenet").data, "trainval", True, data_dir=str(tmp_path))
    data.source = dataclasses.replace(data.source, num_examples=20)  # the files' count

    def labels(skip, count):
        return [int(label) for _, (_, label) in data.examples(1, skip).take(count)]
    whole = labels(0, 60)
    assert [sorted(whole[i:i + 20]) for i in (0, 20, 40)] == [list(range(20))] * 3
    assert whole[:20] != whole[20:40]
    assert labels(43, 10) == whole[43:53]


def test_no_epoch_of_a_class_sorted_folder_comes_out_in_class_runs(train_data):
    """An image folder lists its images class by class. Every epoch's order must mix them:
    the old per-index cipher left epoch 12 of 1,000 images almost in file order (batches of
    one class, and a training loss that jumped for an epoch)."""
    classes, size, batch = 10, 1000, 32
    labels = np.repeat(np.arange(classes), size // classes)
    train_data.source = dataclasses.replace(
        train_data.source, table=(tf.constant(labels),), num_examples=size,
        read_item=lambda label: label)
    for seed in (0, 1):
        order = np.fromiter((label for _, label in
                             train_data.examples(seed).take(20 * size).as_numpy_iterator()), np.int64)
        for epoch in range(20):
            batches = order[epoch * size:(epoch + 1) * size][:size // batch * batch].reshape(-1, batch)
            top_share = np.mean([np.bincount(b, minlength=classes).max() / batch for b in batches])
            assert top_share < 0.3, (seed, epoch, top_share)  # ~0.2 for a random order
