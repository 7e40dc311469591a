"""Distribution strategy, precision and XLA choices from the config."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf
from absl import logging


def build_strategy(config) -> tf.distribute.Strategy:
    """MultiWorkerMirrored with TF_CONFIG, Mirrored over local GPUs, or CPU.

    On CPU, `train.cpu_replicas > 1` mirrors over that many logical CPU
    devices (created here if TF is not initialised yet; tests create them in
    conftest). One CPU replica uses the default strategy.
    """
    if os.environ.get("TF_CONFIG"):
        cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
        logging.info("TF_CONFIG set (%s): MultiWorkerMirroredStrategy", cluster)
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    n = int(config.train.cpu_replicas)
    if n > 1:
        cpus = tf.config.list_logical_devices("CPU")
        if len(cpus) < n:
            try:
                tf.config.set_logical_device_configuration(
                    tf.config.list_physical_devices("CPU")[0],
                    [tf.config.LogicalDeviceConfiguration() for _ in range(n)],
                )
            except RuntimeError as e:
                raise RuntimeError(
                    f"train.cpu_replicas={n} needs {n} logical CPU devices, but TF is already "
                    f"initialised with {len(cpus)}; set it before any TF op runs"
                ) from e
            cpus = tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in cpus[:n]])
    return tf.distribute.get_strategy()


def use_xla(config) -> bool:
    """`train.xla`: "on", "off" or "auto" (on when a GPU is present)."""
    mode = str(config.train.xla).lower()
    if mode in ("on", "true", "1"):
        return True
    if mode in ("off", "false", "0"):
        return False
    if mode == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    raise ValueError(f"train.xla must be 'on', 'off' or 'auto', got {config.train.xla!r}")


def set_precision(config) -> str:
    """Sets the global Keras dtype policy from `train.precision`."""
    policy = str(config.train.precision)
    if policy not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"train.precision must be float32, mixed_bfloat16 or mixed_float16, got {policy!r}")
    keras.mixed_precision.set_global_policy(policy)
    return policy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this worker writes checkpoints and summaries."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not os.environ.get("TF_CONFIG"):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0) or task_type is None
