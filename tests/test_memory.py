"""spt_tf.memory: the oneDNN allocator switch the evaluator relies on."""

import os
import subprocess
import sys

import pytest

from spt_tf import memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "env, pool",
    [
        ({}, True),
        ({"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}, False),
        ({"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "true"}, False),
        ({"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "0"}, True),
        ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False),
    ],
)
def test_pool_allocator_guess_follows_the_environment(monkeypatch, env, pool):
    for k in ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "TF_ENABLE_ONEDNN_OPTS"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert memory.onednn_pool_allocator_in_use() is pool


def test_system_allocator_is_set_but_a_users_choice_wins(monkeypatch):
    monkeypatch.delenv(memory.ONEDNN_SYSTEM_ALLOCATOR, raising=False)
    memory.use_system_allocator_for_onednn()
    assert os.environ[memory.ONEDNN_SYSTEM_ALLOCATOR] == "1"
    monkeypatch.setenv(memory.ONEDNN_SYSTEM_ALLOCATOR, "0")
    memory.use_system_allocator_for_onednn()
    assert os.environ[memory.ONEDNN_SYSTEM_ALLOCATOR] == "0"


def test_evaluate_py_asks_for_the_system_allocator():
    code = (
        "import os, sys; sys.argv = ['evaluate.py']; import evaluate, tensorflow as tf; "
        "print(os.environ.get('TF_ONEDNN_USE_SYSTEM_ALLOCATOR'), tf.constant(1).numpy())"
    )
    env = {k: v for k, v in os.environ.items() if k != memory.ONEDNN_SYSTEM_ALLOCATOR}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["1", "1"]


def test_resident_memory_is_read_and_grows_with_an_allocation():
    before = memory.resident_mb()
    block = b"\x01" * (64 * 2**20)  # written, so resident
    after = memory.resident_mb()
    assert before > 1.0
    assert after - before > 48.0
    del block


_MMAP_PROBE = """
import ctypes, json, sys
from spt_tf import memory
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
mode, tuned = sys.argv[1], None
if mode == "tune":
    tuned = memory.limit_malloc_retention()
elif mode == "evaluate.py":  # what importing evaluate.py did
    sys.argv = ["evaluate.py"]
    import evaluate
libc.free(libc.malloc(8 << 20))  # untuned glibc now raises its mmap threshold to 8 MB
p = libc.malloc(1 << 20)
mmapped = bool(ctypes.c_size_t.from_address(p - 8).value & 2)  # chunk header: IS_MMAPPED
libc.free(p)
print(json.dumps({"tuned": tuned, "mmapped": mmapped, "limits": memory.malloc_limits()}))
"""


def _probe(arg, **env_extra):
    import json

    env = {k: v for k, v in os.environ.items() if k not in memory._MALLOC_ENV}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", _MMAP_PROBE, arg],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(memory._glibc() is None, reason="glibc malloc only")
def test_limit_malloc_retention_keeps_large_blocks_out_of_the_heap():
    # Default glibc: after an 8 MB block is freed, a 1 MB block comes from the heap.
    assert _probe("plain") == {"tuned": None, "mmapped": False, "limits": None}
    # Tuned: the threshold stays at 256 KB, so the 1 MB block is its own mapping.
    tuned = _probe("tune")
    assert tuned["mmapped"] is True and tuned["limits"] == tuned["tuned"]
    assert tuned["tuned"] == {
        "arena_max": 2,
        "mmap_threshold": 256 * 1024,
        "trim_threshold": 256 * 1024,
    }
    # evaluate.py tunes malloc as it is imported, before TensorFlow starts.
    from_evaluate = _probe("evaluate.py")
    assert from_evaluate["mmapped"] is True and from_evaluate["limits"]["arena_max"] == 2
    # A user's malloc environment wins: nothing is changed.
    assert _probe("tune", MALLOC_ARENA_MAX="4") == {
        "tuned": None,
        "mmapped": False,
        "limits": None,
    }


@pytest.mark.skipif(memory._glibc() is None, reason="glibc malloc only")
def test_malloc_stats_count_a_heap_allocation():
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = memory.malloc_stats_mb()
    blocks = [libc.malloc(4096) for _ in range(4096)]  # 16 MB of small blocks: heap
    during = memory.malloc_stats_mb()
    for b in blocks:
        libc.free(b)
    assert set(before) == {"heap", "heap_free", "mmap"}
    assert during["heap"] - during["heap_free"] >= before["heap"] - before["heap_free"] + 15.0
