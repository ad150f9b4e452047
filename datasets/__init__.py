"""Input pipelines: a registry of tfds datasets, Fashion-MNIST from IDX files, image folders."""
