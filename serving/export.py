"""Export of a run's inference model: a SavedModel in TensorFlow Serving's layout
(`<export_dir>/<version>/`) and, on request, TFLite files.

The SavedModel holds the model with its EMA weights in inference mode (no dropout, batch norm
with its moving statistics), the eval preprocessing of the run, the class names and the run's
config (as assets). Signatures:

- `serving_default`: `image_bytes` string [N] (JPEG/PNG/BMP/GIF, any size);
- `serving_images`: `images` float32 [N, H, W, 3], pixel values 0..255, any size.

Both return `logits`, `probabilities` [N, classes], `top_k_ids`, `top_k_probabilities` and
`top_k_names` [N, k]. `explain` (`image_bytes` as serving_default) returns `probabilities`,
`grad_cam` [N, h, w] (the top class's Grad-CAM map on the eval crop, peak 1) and
`grad_cam_class` [N] (serving/explain.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from efficientnetv2.datasets import preprocessing
from efficientnetv2.errors import UserError
from efficientnetv2.files import scratch_folder
from efficientnetv2.inference import TestTimeViews, inference_logits

from .explain import explainer, grad_cam

CLASSES_ASSET = "classes.txt"
CONFIG_ASSET = "config.yaml"
BYTES_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "serving_images"
EXPLAIN_SIGNATURE = "explain"  # image bytes -> probabilities and Grad-CAM maps


class InferenceModule(tf.Module):
    """The model with eval preprocessing and named outputs, as tf.functions to save or call."""

    def __init__(self, model: keras.Model, class_names: list[str], config_yaml: str,
                 image_size: int, recipe: preprocessing.Recipe, top_k: int = 5,
                 multilabel: bool = False, views: TestTimeViews | None = None):
        super().__init__(name="efficientnetv2_inference")
        if len(class_names) != model.output_shape[-1]:
            raise UserError(f"{len(class_names)} class names for a model with "
                            f"{model.output_shape[-1]} classes")
        self.model = model
        self.class_names = list(class_names)
        self.image_size = image_size
        self.recipe = recipe
        self.top_k = min(top_k, len(class_names))
        self.multilabel = multilabel
        self.views = views or TestTimeViews()
        self.config_yaml = config_yaml
        self.class_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.range(len(class_names), dtype=tf.int64), tf.constant(self.class_names)),
            default_value="")
        self.serve_bytes = tf.function(self._serve_bytes, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes")])
        self.serve_images = tf.function(self._serve_images, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
        self.explaining = explainer(model)
        self.explain = tf.function(self._explain, input_signature=[
            tf.TensorSpec([None], tf.string, name="image_bytes")])
        # TFLite's XNNPACK delegate gives NaNs for inputs of unknown height and width
        # (TF 2.21): the TFLite model takes one image at the eval size (pixels 0..255).
        self.tflite_function = tf.function(self._probabilities, input_signature=[
            tf.TensorSpec([1, image_size, image_size, 3], tf.float32, name="images")])

    def _preprocess(self, images):
        return self.recipe.eval_image(images, self.image_size)

    def _logits(self, preprocessed):
        return inference_logits(self.model, preprocessed, self.views)

    def _activate(self, logits):
        return tf.sigmoid(logits) if self.multilabel else tf.nn.softmax(logits)

    def _outputs(self, logits):
        probabilities = self._activate(logits)
        top = tf.math.top_k(probabilities, self.top_k)
        return {"logits": logits, "probabilities": probabilities, "top_k_ids": top.indices,
                "top_k_probabilities": top.values,
                "top_k_names": self.class_table.lookup(tf.cast(top.indices, tf.int64))}

    def _decoded(self, image_bytes):
        size = self.image_size
        return tf.map_fn(
            lambda data: self._preprocess(preprocessing.decode(data, True)), image_bytes,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    def _serve_bytes(self, image_bytes):
        return self._outputs(self._logits(self._decoded(image_bytes)))

    def _explain(self, image_bytes):
        """The probabilities (as served) and each image's Grad-CAM map for its top class
        (on one view: the eval crop at the eval size)."""
        images = self._decoded(image_bytes)
        maps, predicted = grad_cam(self.explaining, images)
        return {"probabilities": self._activate(self._logits(images)), "grad_cam": maps,
                "grad_cam_class": predicted}

    def _serve_images(self, images):
        return self._outputs(self._logits(self._preprocess(images)))

    def _probabilities(self, images):
        # An image already at the eval size: the eval crop keeps it whole and the resize is
        # the identity, so only the run's normalisation remains (TFLite has no bicubic op).
        logits = self._logits(preprocessing.normalize(images, self.recipe.normalization))
        return {"logits": logits, "probabilities": self._activate(logits)}


def version_dir(export_dir: str, version: int, overwrite: bool) -> str:
    """`<export_dir>/<version>`, refused (before any work) if it exists unless `overwrite`."""
    if version < 0:
        raise UserError(f"`export_version`={version} must be a non-negative integer")
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise UserError(f"`export_dir` {export_dir!r} is a file; pass a folder (versions go "
                        "into <export_dir>/<version>/)")
    target = os.path.join(export_dir, str(version))
    if os.path.exists(target) and not overwrite:
        raise UserError(f"{target} already exists; pass `overwrite` to replace it or "
                        "`export_version`=N for a new version")
    return target


def save_saved_model(module: InferenceModule, directory: str) -> str:
    """Writes the SavedModel into `directory`, the class names and the run's config as its
    assets (`assets/classes.txt`, `assets/config.yaml`)."""
    staging = tempfile.mkdtemp(prefix=".assets-", dir=directory)
    for name, text in ((CLASSES_ASSET, "".join(f"{c}\n" for c in module.class_names)),
                       (CONFIG_ASSET, module.config_yaml)):
        with open(os.path.join(staging, name), "w", encoding="utf-8") as f:
            f.write(text)
    module.classes_file = tf.saved_model.Asset(os.path.join(staging, CLASSES_ASSET))
    module.config_file = tf.saved_model.Asset(os.path.join(staging, CONFIG_ASSET))
    try:
        tf.saved_model.save(module, directory, signatures={
            BYTES_SIGNATURE: module.serve_bytes.get_concrete_function(),
            IMAGES_SIGNATURE: module.serve_images.get_concrete_function(),
            EXPLAIN_SIGNATURE: module.explain.get_concrete_function()})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _move_into_place(scratch: str, target: str, overwrite: bool) -> None:
    """Renames the complete `scratch` folder to `target`, replacing an older `target` only
    with `overwrite` (another export may have written it since the start)."""
    if overwrite and os.path.exists(target):
        old = scratch + ".old"
        os.rename(target, old)
        os.rename(scratch, target)
        shutil.rmtree(old)
        return
    try:
        os.rename(scratch, target)  # fails where a folder with files is in the way
    except OSError:
        if not os.path.exists(target):
            raise
        raise UserError(f"{target} was written by another export meanwhile; pass `overwrite` "
                        "to replace it or `export_version`=N for a new version") from None


def save_tflite(module: InferenceModule, path: str, quantize: str = "none",
                calibration: np.ndarray | None = None) -> str:
    """A TFLite model: one image [1, S, S, 3] of pixel values 0..255 at the eval size S in,
    the eval preprocessing inside, `logits` and `probabilities` out. `quantize`: none
    (float32); dynamic (int8 weights, float activations and input); full (int8 weights and
    activations calibrated on the `calibration` images [N, S, S, 3] (pixels 0..255), uint8
    pixels in with scale 1 and zero point 0, int8 outputs: value = scale * (q - zero point),
    as the interpreter's output details say), for integer-only accelerators."""
    function = module.tflite_function.get_concrete_function()
    tf_logger, verbosity = tf.get_logger(), logging.get_verbosity()
    level = tf_logger.level
    tf_logger.setLevel("ERROR")  # the deprecation notice of this path, a table warning
    logging.set_verbosity(logging.ERROR)
    try:
        # Without `trackable_obj` the converter freezes the variables into constants. With it
        # (or from a SavedModel) TF 2.21 keeps Keras 3's variables as resources that the
        # TFLite interpreter reads as NaN.
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "full":
            # a black and a white image pin the input's range to 0..255: scale 1, zero point 0
            extremes = np.stack([np.zeros_like(calibration[0]), np.full_like(calibration[0], 255)])
            images = np.concatenate([extremes, calibration]).astype(np.float32)
            converter.representative_dataset = lambda: ([image[None]] for image in images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.int8
        with warnings.catch_warnings():
            # the uint8 input's range comes from the representative images, not from stats
            warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
            data = converter.convert()
    finally:
        tf_logger.setLevel(level)
        logging.set_verbosity(verbosity)
    with open(path, "wb") as f:
        f.write(data)
    return path


def run_tflite(interpreter, image: np.ndarray) -> dict[str, np.ndarray]:
    """An exported TFLite model (in a tf.lite or LiteRT interpreter, tensors allocated) on
    one image [1, S, S, 3] of pixels 0..255 (uint8 for the full-integer file): its `logits`
    and `probabilities`, dequantized (value = scale * (q - zero point)) where quantized."""
    given = interpreter.get_input_details()[0]
    interpreter.set_tensor(given["index"], image.astype(given["dtype"]))
    interpreter.invoke()
    outputs = []
    for detail in interpreter.get_output_details():  # in the function's order
        value = interpreter.get_tensor(detail["index"]).astype(np.float32)
        scale, zero = detail["quantization"]
        outputs.append((value - zero) * scale if scale else value)
    return dict(zip(("logits", "probabilities"), outputs))


def eval_pixels(config, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Up to `count` (default all) images of the run's eval split as the TFLite model takes
    them: the eval crop and resize, pixels 0..255 (the normalisation undone); and their
    labels (the first class of each)."""
    from efficientnetv2.datasets import DataInput

    try:
        data = DataInput(config.data, config.eval.split, False)
    except UserError as e:
        raise UserError(f"full-integer TFLite needs the run's eval images to calibrate on: {e}; "
                        "pass `data_dir`=FOLDER with them") from None
    offset, scale = preprocessing.NORMALIZATIONS[preprocessing.recipe_for(config.data).normalization]
    images, labels, have = [], [], 0
    for batch, label in data.dataset(min(count or 256, 256), config.eval.isize):
        images.append(batch.numpy() * np.asarray(scale, np.float32) + np.asarray(offset, np.float32))
        labels.append(np.argmax(label.numpy(), 1))
        have += len(images[-1])
        if count and have >= count:
            break
    return np.clip(np.concatenate(images)[:count], 0, 255), np.concatenate(labels)[:count]


def module_for_run(restored, top_k: int = 5) -> InferenceModule:
    """The InferenceModule of a restored run (`run_folder.restore_model`)."""
    import yaml

    from efficientnetv2 import hparams

    config = restored.config
    return InferenceModule(restored.model, restored.class_names,
                           yaml.safe_dump(config.to_dict(), sort_keys=False), config.eval.isize,
                           preprocessing.recipe_for(config.data), top_k,
                           multilabel=hparams.loss_type(config) != "softmax",
                           views=preprocessing.eval_views(config))


TFLITE_FILES = {"none": "model.tflite", "dynamic": "model_dynamic_int8.tflite",
                "full": "model_int8.tflite"}


def export_run(restored, export_dir: str, version: int | None = None, overwrite: bool = False,
               tflite: tuple[str, ...] = (), top_k: int = 5, calibration: int = 300,
               hub: bool = False) -> list[str]:
    """Exports a restored run as `<export_dir>/<version>/` (version: the checkpoint's step by
    default), with a TFLite model per quantization in `tflite` (none, dynamic, full: see
    save_tflite; full is calibrated on `calibration` eval images) and, with `hub`, TF-Hub
    modules in `hub/classification` and `hub/feature_vector` (serving/hub.py); returns the
    paths. Everything is written into a hidden scratch folder beside the version, renamed
    to it when complete: a version folder is always a whole export (an interrupted one's
    scratch is removed by the next export into the same folder)."""
    from efficientnetv2.run_folder.checkpoints import step_of

    target = version_dir(export_dir, step_of(restored.checkpoint) if version is None else version,
                         overwrite)
    # calibration images first: a run whose eval images are gone fails before writing
    images = eval_pixels(restored.config, calibration)[0] if "full" in tflite else None
    module = module_for_run(restored, top_k)
    scratch = scratch_folder(os.path.dirname(os.path.abspath(target)), os.path.basename(target))
    try:
        names = [save_saved_model(module, scratch)]
        for quantize, name in TFLITE_FILES.items():
            if quantize in tflite:
                names.append(save_tflite(module, os.path.join(scratch, name), quantize,
                                         images if quantize == "full" else None))
        if hub:
            from .hub import save_hub_modules

            names += save_hub_modules(restored.model, module.recipe.normalization,
                                      os.path.join(scratch, "hub"))
        _move_into_place(scratch, target, overwrite)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return [target + path[len(scratch):] for path in names]
