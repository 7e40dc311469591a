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
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split()[-2:] == ["1", "1"]


def test_resident_memory_is_read_and_grows_with_an_allocation():
    before = memory.resident_mb()
    block = b"\x01" * (64 * 2**20)  # written, so resident
    after = memory.resident_mb()
    assert before > 1.0
    assert after - before > 48.0
    del block
