"""Installs the model library `efficientnetv2` with its data, config, run-folder, training,
serving and experiment packages.

The repository's `datasets/`, `hparams/`, `run_folder/`, `training/`, `serving/` and
`experiments/` folders install as `efficientnetv2.datasets`, `.hparams`, `.run_folder`,
`.training`, `.serving` and `.experiments`: nothing is installed under a top-level name such
as `datasets`, which belongs to Hugging Face. Inside `efficientnetv2/` the same folders are
links, for editors and type checkers (README, Layout).
"""

from setuptools import setup

setup(
    name="efficientnetv2-keras",
    version="0.1.0",
    description="EfficientNetV2 / EfficientNet in TensorFlow 2 and Keras 3: models from block "
                "strings, progressive training, evaluation and export.",
    python_requires=">=3.10",
    packages=["efficientnetv2", "efficientnetv2.datasets", "efficientnetv2.hparams",
              "efficientnetv2.training", "efficientnetv2.serving", "efficientnetv2.run_folder",
              "efficientnetv2.experiments"],
    package_dir={
        "efficientnetv2": "efficientnetv2",
        "efficientnetv2.datasets": "datasets",
        "efficientnetv2.hparams": "hparams",
        "efficientnetv2.training": "training",
        "efficientnetv2.serving": "serving",
        "efficientnetv2.run_folder": "run_folder",
        "efficientnetv2.experiments": "experiments",
    },
    package_data={"efficientnetv2.datasets": ["imagenet_labels.txt"],
                  "efficientnetv2.hparams": ["demo.yaml"],
                  "efficientnetv2.experiments": ["studies.yaml"]},
    install_requires=[
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9.9",
        "ml-collections>=1.1",
        "absl-py>=2.1",
        "numpy>=1.26",
        "pyyaml>=6.0",
        "matplotlib>=3.8",
        "tensorboard>=2.21",  # tf.summary needs it; tensorflow-cpu does not depend on it
        "pillow>=10.0",
        "importlib_resources>=6.0",  # tfds needs it to download and prepare datasets
    ],
    extras_require={
        # One TensorFlow distribution: the small CPU build, or the full one for NVIDIA GPUs.
        "cpu": ["tensorflow-cpu>=2.21,<2.22"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # Hugging Face's `datasets` is installed for the test that both packages coexist.
        # tensorflow-hub and tf-keras: the test that loads the exported TF-Hub modules;
        # jax (CPU): the test of the model library on Keras' JAX backend.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "datasets>=3", "ruff>=0.6", "mypy>=1.10",
                 "tensorflow-hub>=0.16", "tf-keras>=2.21,<2.22", "jax[cpu]>=0.4"],
        # LiteRT, the TFLite runtime of phones and boards: experiments/tflite_int8.py
        "litert": ["ai-edge-litert>=2.3"],
    },
)
