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

With oneDNN's buffers coming from glibc malloc, :func:`limit_malloc_retention`
keeps glibc from holding freed buffers in per-thread arenas (a creeping peak
over thousands of batches); :func:`malloc_stats_mb` reads glibc's own account
for benchmarks.
"""

from __future__ import annotations

import ctypes
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


# glibc mallopt(3) parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
# Environment through which a user tunes glibc malloc: their choice wins.
_MALLOC_ENV = ("GLIBC_TUNABLES", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


_limits_set: dict | None = None


def malloc_limits() -> dict | None:
    """What :func:`limit_malloc_retention` set in this process (None: nothing)."""
    return None if _limits_set is None else dict(_limits_set)


def user_tunes_malloc() -> bool:
    """Whether the environment carries a malloc setting of the user's (it wins)."""
    return any(k in os.environ for k in _MALLOC_ENV)


def _glibc():
    libc = ctypes.CDLL(None)
    try:
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()
    except AttributeError:
        return None
    return libc


def limit_malloc_retention(
    arena_max: int = 2, mmap_threshold: int = 256 * 1024, trim_threshold: int = 256 * 1024
) -> dict | None:
    """Bounds what glibc malloc keeps of freed memory, for long streaming runs.

    With oneDNN's buffers from malloc (:func:`use_system_allocator_for_onednn`),
    two glibc defaults make a long run's resident memory creep: every thread
    that meets contention gets its own arena (up to 8 per core), each keeping
    its own freed blocks; and the mmap threshold rises to the largest block
    freed so far (up to 32 MB), after which tensor buffers below it come from
    those arenas and fragment them instead of going back to the OS. This caps
    the arenas at ``arena_max`` and fixes the thresholds (mallopt(3)), so every
    buffer of ``mmap_threshold`` bytes or more is its own mapping, unmapped when
    freed. Call it before TensorFlow starts its threads (``evaluate.py`` does).

    Returns the values set, or None where nothing was changed: not glibc, or the
    user tunes malloc through the environment (their values win).
    """
    global _limits_set
    if user_tunes_malloc():
        return None
    libc = _glibc()
    if libc is None:
        return None
    settings = {
        "arena_max": (_M_ARENA_MAX, arena_max),
        "mmap_threshold": (_M_MMAP_THRESHOLD, mmap_threshold),
        "trim_threshold": (_M_TRIM_THRESHOLD, trim_threshold),
    }
    for name, (param, value) in settings.items():
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(int(value))) != 1:
            raise OSError(f"memory.limit_malloc_retention: mallopt refused {name}={value}")
    _limits_set = {name: int(value) for name, (_, value) in settings.items()}
    return dict(_limits_set)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_stats_mb() -> dict | None:
    """glibc's own account (mallinfo2, glibc >= 2.33), in MiB, or None elsewhere.

    ``heap``: taken from the OS into the arenas; ``heap_free``: of that, free
    blocks kept (fragmentation when it grows); ``mmap``: blocks mapped on their own.
    """
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return {"heap": m.arena / 2**20, "heap_free": m.fordblks / 2**20, "mmap": m.hblkhd / 2**20}


def resident_mb() -> float:
    """This process's resident memory now, in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
