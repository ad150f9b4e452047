"""tf.distribute strategies by name: default, gpus, multiworker, tpu."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from efficientnetv2.errors import UserError

STRATEGIES = ("default", "gpus", "multiworker", "tpu")


def make_strategy(name: str, tpu: str | None = None, tpu_zone: str | None = None,
                  gcp_project: str | None = None, tpu_job_name: str | None = None
                  ) -> tf.distribute.Strategy:
    """The strategy `runtime.strategy` names.

    default: one device (the first GPU if any); gpus: MirroredStrategy over every local GPU
    (or every logical CPU device); multiworker: MultiWorkerMirroredStrategy, workers from
    the TF_CONFIG environment variable; tpu: TPUStrategy on `tpu` (a name or grpc address;
    `tpu_job_name`: the TPU workers' job, the original's flag).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "gpus":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        try:
            cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster")
        except json.JSONDecodeError as e:
            raise UserError(f"TF_CONFIG is not valid JSON ({e}); see README 'Several machines'") from None
        if not cluster:
            raise UserError("runtime.strategy=multiworker needs TF_CONFIG with a 'cluster' and "
                            "a 'task'; see README 'Several machines'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        if not tpu:
            raise UserError("runtime.strategy=tpu needs `tpu`=NAME (and `tpu_zone`, `gcp_project`)")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu, zone=tpu_zone, project=gcp_project, job_name=tpu_job_name or "worker")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"runtime.strategy {name!r} must be one of {', '.join(STRATEGIES)}")


def split_cpu(count: int) -> None:
    """Splits the CPU into `count` logical devices (before TF initialises), so that `gpus`
    runs MirroredStrategy on a machine without GPUs: for tests and trying things out."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes logs and plots (checkpoints are written by every worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())
