"""Process memory settings for long streaming runs (the evaluator).

On x86 CPUs TensorFlow runs convolutions through oneDNN, whose tensors come
from a BFC pool allocator that never gives memory back: the process keeps the
high-water mark of every batch's activations (2.3 GB more after the first
256x256 batch of 16) and, as the pool fragments, grows with the number of
batches (docs/benchmarks.md, "Evaluator"). TensorFlow's
``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`` makes oneDNN allocate with malloc instead,
which returns the large buffers to the OS once a batch is done. It is read when
TensorFlow creates its CPU allocator (its first op), so it must be set before
then: ``evaluate.py`` calls :func:`use_system_allocator_for_onednn` before it
imports the evaluator. Training keeps TensorFlow's default (the pool is faster
for the identical allocations of every step, and a training step's peak is
its working set anyway).
"""

from __future__ import annotations

import os

ONEDNN_SYSTEM_ALLOCATOR = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"


def use_system_allocator_for_onednn() -> None:
    """Sets ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`` unless the user set it.

    Call before TensorFlow runs anything in this process; later it has no effect.
    """
    os.environ.setdefault(ONEDNN_SYSTEM_ALLOCATOR, "1")


def onednn_pool_allocator_in_use() -> bool:
    """Whether oneDNN's tensors come from its BFC pool (memory never returned).

    True unless oneDNN is off (``TF_ENABLE_ONEDNN_OPTS=0``) or the system allocator
    was asked for; a best guess from the environment, as TensorFlow does not expose it.
    """
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip().lower() in ("0", "false"):
        return False
    return os.environ.get(ONEDNN_SYSTEM_ALLOCATOR, "").strip().lower() not in ("1", "true")


def resident_mb() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
