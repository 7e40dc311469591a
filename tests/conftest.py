"""Shared test set-up: quiet TF logs, 2 logical CPU devices, repo root on sys.path."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy tests run real multi-replica steps.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )
except RuntimeError:  # already initialised in this process
    pass


import pytest  # noqa: E402

from tests.helpers import make_people  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny synthetic people set (64x32 on disk) with a random pseudo-pairs file."""
    root = str(tmp_path_factory.mktemp("tiny_data"))
    return make_people(root, identities=6, poses=3, height=64, width=32, seed=3, test_fraction=0.34, pair_shift=2)


@pytest.fixture
def tiny_config(tiny_data):
    """configs/testing.py pointing at `tiny_data` (32x16 networks: the pipeline resizes)."""
    from configs import testing

    config = testing.get_config()
    config.data.root = tiny_data
    return config


@pytest.fixture
def trained(_trained_info):
    """A workdir trained through all stages for 2 steps each, plus an export.

    Returns a dict: config (a fresh configs/testing.py on the data, free to
    mutate), workdir, export (the SavedModel version directory), data.
    Treat workdir and export as read-only (copy them to change them).
    """
    from configs import testing

    config = testing.get_config()
    config.data.root = _trained_info["data"]
    return {"config": config, **_trained_info}


@pytest.fixture(scope="session")
def _trained_info(tmp_path_factory):
    """Trains once per session, shared across xdist workers through a file lock."""
    import fcntl
    import json

    from configs import testing

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    # Developers may keep one trained fixture across runs (not used in CI).
    root = shared / "trained"
    if os.environ.get("SPT_TEST_TRAINED_DIR"):
        import pathlib

        root = pathlib.Path(os.environ["SPT_TEST_TRAINED_DIR"])
    root.mkdir(parents=True, exist_ok=True)
    config = testing.get_config()
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "done.json"
        if done.exists():
            info = json.loads(done.read_text())
        else:
            from spt_tf import evaluation
            from spt_tf.export import module
            from spt_tf.training import loop

            data = make_people(str(root / "data"), identities=6, poses=3, height=64, width=32, seed=3,
                               test_fraction=0.34, pair_shift=2)  # fmt: skip
            config.data.root = data
            workdir = str(root / "workdir")
            loop.run(config, workdir, "all", validators=evaluation.stage_validators())
            export = module.export(config, workdir, str(root / "export"))
            info = {"data": data, "workdir": workdir, "export": export}
            done.write_text(json.dumps(info))
    return info


@pytest.fixture(scope="session")
def parser_workdir(tmp_path_factory, _trained_info):
    """A copy of the trained workdir whose parser stage ran 2 steps as well."""
    import shutil

    from configs import testing
    from spt_tf import evaluation
    from spt_tf.training import loop

    wd = str(tmp_path_factory.mktemp("parser_workdir") / "workdir")
    shutil.copytree(_trained_info["workdir"], wd)
    config = testing.get_config()
    config.data.root = _trained_info["data"]
    loop.train_stage(config, wd, "parser", validators=evaluation.stage_validators())
    return wd


def pytest_collection_modifyitems(config, items):
    """Runs the long test that needs no trained model first and the tests that need the shared
    trained model (the ``trained`` fixture) last.

    Under xdist the first worker to need that model trains it while the others wait on its
    lock; with this order the other worker is busy with the long test meanwhile. The sort is
    stable: the order within each group is the collection order.
    """

    def group(item):
        if item.nodeid.startswith("tests/test_deepfashion176.py"):
            return 0
        return 2 if "trained" in getattr(item, "fixturenames", ()) else 1

    items.sort(key=group)
