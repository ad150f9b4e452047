"""tf.data input pipelines: source -> per-epoch order (this worker's share) -> preprocess ->
batch -> mixup/cutmix -> prefetch. Yields (images float32 [B, S, S, 3] normalised as the
run's recipe says, labels float32 [B, classes], one-hot or multi-hot)."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from . import augment, preprocessing
from .preprocessing import AUGNAMES
from .registry import configured_spec
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


@dataclasses.dataclass(frozen=True)
class Share:
    """What one input pipeline of several reads of the global training order: blocks of
    `block` consecutive positions (its replicas' part of a global batch), dealt round-robin
    to `pipelines` pipelines. So the workers of a multi-worker run together train on the
    batches one device would, each example augmented as it would be there."""

    pipelines: int = 1
    index: int = 0
    block: int = 1

    @classmethod
    def of(cls, context: tf.distribute.InputContext | None, batch_size: int) -> Share:
        """The share of `context`'s pipeline, `batch_size` being per replica."""
        if context is None or context.num_input_pipelines == 1:
            return cls()
        pipelines = context.num_input_pipelines
        return cls(pipelines, context.input_pipeline_id,
                   batch_size * context.num_replicas_in_sync // pipelines)

    def keep(self, ds: tf.data.Dataset, start: int) -> tf.data.Dataset:
        """(position, item) pairs of this share, positions counted from `start`."""
        ds = ds.enumerate(start=start)
        if self.pipelines == 1:
            return ds
        return ds.filter(lambda position, _: position // self.block % self.pipelines == self.index)


class DataInput:
    """One split of a registry dataset; builds pipelines at any image size and augmentation.

    The source is loaded once (and checked: missing files, bad folders), so that progressive
    learning can build a pipeline per stage cheaply. `data.max_train_examples` /
    `data.max_eval_examples` (0: all) and `data.splits.<split>.num_images` keep only the
    first examples of the split.
    """

    def __init__(self, data_config, split: str, is_training: bool, data_dir: str | None = None,
                 seed: int = 0):
        self.spec = configured_spec(data_config)
        self.config = data_config
        self.split = split
        self.is_training = is_training
        self.seed = seed
        self.source: Source = load_source(self.spec, split, data_dir or data_config.data_dir,
                                          data_config.val_fraction, seed,
                                          try_gcs=bool(data_config.get("try_gcs")))
        limit = data_config.max_train_examples if is_training else data_config.max_eval_examples
        split_size = data_config.get("splits", {}).get(split, {}).get("num_images")
        limit = min(filter(None, (limit, split_size)), default=0)  # data.splits.<split>.num_images
        # (a TFRecord source's count is the declared num_images, not what its files hold)
        if limit and (self.source.num_examples is None or limit < self.source.num_examples
                      or self.source.files is not None):
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
        """The source's names, or the class ids where they do not name every class (a
        `data.num_classes` other than the dataset's)."""
        names = list(self.source.class_names)
        return names if len(names) == self.num_classes else [str(i) for i in range(self.num_classes)]

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

    def examples(self, seed: int, skip: int = 0, share: Share | None = None) -> tf.data.Dataset:
        """Training examples as (position, example) over endless epochs, from position `skip` on.

        Epoch e has its own order of the whole split, seeded by (seed, e), so that positioning
        costs little (a source with random access: a permutation of the split per epoch,
        positioned by skipping row numbers) or at most one epoch of reading unparsed records
        (record files: a permutation of the files per epoch, then the shuffle buffer; reading
        resumes inside the epoch only). Other streams (tfds) are reshuffled each pass and
        positioned by reading from the stage's start. Every input pipeline computes the same
        order and keeps its `share` of it before reading or parsing an example.
        """
        source, buffer, share = self.source, self.config.shuffle_buffer, share or Share()
        if source.table is not None or source.files is not None:
            first_epoch, within = divmod(skip, source.num_examples)
        if source.table is not None:

            def epoch_rows(epoch):
                return tf.data.Dataset.from_tensor_slices(
                    _permutation(source.num_examples, seed, epoch))

            def example(position, row):
                return position, source.read_item(*[tf.gather(t, row) for t in source.table])
            rows = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch_rows).skip(within)
            return share.keep(rows, skip).map(example)
        if source.files is not None:
            files = tf.constant(source.files)

            def epoch(index):
                order = _permutation(len(source.files), seed, index)
                records = source.read_files(tf.gather(files, order))
                # an epoch is `num_examples` records, as the step plan counts it, whatever the
                # files hold
                records = records.repeat().take(source.num_examples)
                return records.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)

            def example(position, record):
                return position, source.parse(record)
            records = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(within)
            return share.keep(records, skip).map(example, num_parallel_calls=tf.data.AUTOTUNE,
                                                 deterministic=True)
        ds = source.dataset
        if self.config.cache and not source.in_memory:
            ds = ds.cache()
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat().skip(skip)
        return share.keep(ds, skip)

    def dataset(self, batch_size: int, image_size: int, augmentation: Augmentation | None = None,
                input_context: tf.distribute.InputContext | None = None,
                seed: int | None = None, skip: int = 0) -> tf.data.Dataset:
        """The pipeline; `batch_size` is per replica when `input_context` is given.

        Training order and randomness depend only on `seed` (default: the DataInput's) and
        the example's position in the global order, so `skip=n` continues exactly where
        training that read n examples in all (a multiple of the global batch) stopped: how
        training resumes, on any number of workers. Each epoch
        has its own seeded order, so a resume reads at most one epoch to get there.
        """
        aug = augmentation or self.augmentation()
        seed = self.seed if seed is None else seed
        if self.is_training:
            ds = self.examples(seed, skip, Share.of(input_context, batch_size))
        else:
            ds = self.source.dataset
            if input_context is not None and input_context.num_input_pipelines > 1:
                ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
            if self.config.cache and not self.source.in_memory:
                ds = ds.cache()
            ds = ds.enumerate()
        preprocess = self._preprocess(image_size, aug, seed)
        mixer = augment.BatchMixer(aug.mixup_alpha, aug.cutmix_alpha, seed)
        mixing = self.is_training and mixer.active

        def keep_position(position, example):  # for the mixer, seeded by the batch's place
            return position, preprocess(position, example)
        ds = ds.map(keep_position if mixing else preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
        ds = ds.batch(batch_size, drop_remainder=self.is_training,
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if mixing:
            ds = ds.map(lambda positions, batch: mixer(positions[0] // batch_size, batch),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
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
