"""tf.data input pipelines: source -> per-epoch order (shard, cache) -> preprocess ->
batch -> mixup/cutmix -> prefetch. Yields (images float32 [B, S, S, 3] normalised as the
run's recipe says, labels float32 [B, classes], one-hot or multi-hot)."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from . import augment, preprocessing
from .preprocessing import AUGNAMES
from .registry import get_spec
from .sources import Source, load_source

AUGMENTATIONS = tuple(AUGNAMES)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What a training pipeline does beyond crop and flip; set per progressive stage."""

    augname: str
    ra_num_layers: int
    ram: float
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


class DataInput:
    """One split of a registry dataset; builds pipelines at any image size and augmentation.

    The source is loaded once (and checked: missing files, bad folders), so that progressive
    learning can build a pipeline per stage cheaply. `data.max_train_examples` /
    `data.max_eval_examples` (0: all) keep only the first examples of the split.
    """

    def __init__(self, data_config, split: str, is_training: bool, data_dir: str | None = None,
                 seed: int = 0):
        self.spec = get_spec(data_config.ds_name)
        self.config = data_config
        self.split = split
        self.is_training = is_training
        self.seed = seed
        self.source: Source = load_source(self.spec, split, data_dir or data_config.data_dir,
                                          data_config.val_fraction, seed)
        limit = data_config.max_train_examples if is_training else data_config.max_eval_examples
        if limit and (self.source.num_examples is None or limit < self.source.num_examples):
            self.source = self.source.first(limit)
        # `--hparam_str=data.augname=none` arrives as None (the literal none)
        self.augname = data_config.augname or "none"
        self.recipe = preprocessing.recipe_for(data_config)

    @property
    def multiclass(self) -> bool:
        """Multi-label (multi-hot labels): the registry's word, or a folder's labels.csv."""
        return self.spec.multiclass or self.source.multilabel

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes or len(self.source.class_names)

    @property
    def class_names(self) -> list[str]:
        return list(self.source.class_names)

    @property
    def num_examples(self) -> int | None:
        return self.source.num_examples

    def augmentation(self, stage=None) -> Augmentation:
        """The config's augmentation, with a progressive stage's magnitude and mixing if given."""
        c = self.config
        if stage is None:
            return Augmentation(self.augname, c.ra_num_layers, c.ram, c.mixup_alpha, c.cutmix_alpha)
        return Augmentation(self.augname, c.ra_num_layers, stage.ram, stage.mixup_alpha,
                            stage.cutmix_alpha)

    def _preprocess(self, image_size: int, aug: Augmentation, base_seed: int):
        encoded = self.source.encoded
        num_classes, multiclass = self.num_classes, self.multiclass
        recipe, is_training = self.recipe, self.is_training
        consts_size = self.config.get("aug_consts_size") or 0
        augment_fn = augment.augment_function(AUGNAMES[aug.augname][1], aug.ra_num_layers, aug.ram,
                                              image_size / consts_size if consts_size else 1.0)

        def fn(index, example):
            image, label = example
            if is_training:  # encoded JPEGs are decoded inside their crop only
                seed = tf.stack([tf.constant(base_seed, tf.int64), index])
                if not encoded:
                    image = preprocessing.decode(image, encoded)
                image = recipe.train_image(image, image_size, seed, augment_fn, encoded)
            else:
                image = recipe.eval_image(preprocessing.decode(image, encoded), image_size)
            image.set_shape([image_size, image_size, 3])
            if multiclass:
                target = tf.cast(label, tf.float32)
            else:
                target = tf.one_hot(label, num_classes, dtype=tf.float32)
            return image, target
        return fn

    def _training_examples(self, seed: int, skip: int,
                           context: tf.distribute.InputContext | None) -> tf.data.Dataset:
        """This input pipeline's examples over endless epochs, from position `skip` on.

        Epoch e has its own order, seeded by (seed, e), so that positioning costs little (a
        source with random access: a permutation of the whole split per epoch, positioned by
        skipping row numbers) or at most one epoch of reading unparsed records (record
        files: a permutation of the files per epoch, then the shuffle buffer; reading resumes
        inside the epoch only). Other streams (tfds) are reshuffled each pass and positioned
        by reading from the stage's start.
        """
        source, buffer = self.source, self.config.shuffle_buffer
        shards, shard = ((context.num_input_pipelines, context.input_pipeline_id)
                         if context else (1, 0))
        if source.table is not None or source.files is not None:
            size = len(range(shard, source.num_examples, shards))  # this shard's epoch
            first_epoch, within = divmod(skip, size)
        if source.table is not None:

            def epoch_rows(epoch):
                order = _permutation(size, seed, epoch)
                return tf.data.Dataset.from_tensor_slices(order * shards + shard)

            def example(row):
                return source.read_item(*[tf.gather(t, row) for t in source.table])
            rows = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_rows).skip(within)
            return rows.map(example)
        if source.files is not None:
            files = tf.constant(source.files)

            def epoch(index):
                order = _permutation(len(source.files), seed, index)
                records = source.read_files(tf.gather(files, order)).shard(shards, shard)
                # an epoch is `size` records, as the step plan counts it, whatever the files hold
                records = records.repeat().take(size)
                return records.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)
            records = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(within)
            return records.map(source.parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = source.dataset.shard(shards, shard) if shards > 1 else source.dataset
        if self.config.cache and not source.in_memory:
            ds = ds.cache()
        return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat().skip(skip)

    def dataset(self, batch_size: int, image_size: int, augmentation: Augmentation | None = None,
                input_context: tf.distribute.InputContext | None = None,
                seed: int | None = None, skip: int = 0) -> tf.data.Dataset:
        """The pipeline; `batch_size` is per replica when `input_context` is given.

        Training order and randomness depend only on `seed` (default: the DataInput's) and
        the example's position, so `skip=n` continues exactly where a pipeline that yielded
        n examples (n a multiple of `batch_size`) stopped: how training resumes. Each epoch
        has its own seeded order, so a resume reads at most one epoch to get there.
        """
        aug = augmentation or self.augmentation()
        seed = self.seed if seed is None else seed
        if self.is_training:
            ds = self._training_examples(seed, skip, input_context)
        else:
            ds = self.source.dataset
            if input_context is not None and input_context.num_input_pipelines > 1:
                ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            if self.config.cache and not self.source.in_memory:
                ds = ds.cache()
        ds = ds.enumerate(start=skip).map(self._preprocess(image_size, aug, seed),
                                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=self.is_training,
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        mixer = augment.BatchMixer(aug.mixup_alpha, aug.cutmix_alpha, seed)
        if self.is_training and mixer.active:
            ds = ds.enumerate(start=skip // batch_size).map(
                mixer, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        options.deterministic = True
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _permutation(size: int, seed: int, epoch) -> tf.Tensor:
    """Epoch `epoch`'s order of `size` items: a seeded shuffle of the whole range (not
    `index_shuffle`, whose 4-round cipher leaves some epochs of small splits almost in file
    order: one class per batch in a class-sorted image folder)."""
    return tf.random.experimental.stateless_shuffle(
        tf.range(size, dtype=tf.int64), tf.stack([tf.constant(seed, tf.int64), epoch]))
