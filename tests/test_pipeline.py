"""Input pipeline: shapes, ranges, geometry, pseudo/test pairs, sharding, errors."""

import os

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import geometry
from spt_tf.data import formats, pipeline


def test_train_batches_have_all_tensors(tiny_config):
    c = tiny_config
    batch = next(iter(pipeline.train_dataset(c)))
    b, h, w = c.train.batch_size, c.data.height, c.data.width
    assert batch["image"].shape == (b, h, w, 3)
    assert float(tf.reduce_min(batch["image"])) >= -1.0 and float(tf.reduce_max(batch["image"])) <= 1.0
    assert batch["parsing"].dtype == tf.uint8 and batch["parsing"].shape == (b, h, w)
    assert int(tf.reduce_max(batch["parsing"])) < 10
    assert batch["source_pose"].shape == (b, h, w, 18)
    assert batch["target_mask"].shape == (b, h, w, 1)
    assert batch["transforms"].shape == (b, 10, 8)
    assert batch["part_masks"].shape == (b, 10, h, w)
    # The target pose is another image's pose, never the source itself.
    assert all(n != t for n, t in zip(batch["name"].numpy(), batch["target_name"].numpy()))
    # Geometry in the pipeline equals geometry called directly.
    ref = geometry.pose_heatmaps(batch["keypoints"], h, w, c.data.sigma)
    np.testing.assert_allclose(batch["source_pose"].numpy(), ref.numpy(), atol=1e-6)


def test_keypoints_rescaled_to_network_size(tiny_config, tiny_data):
    c = tiny_config
    kps = formats.read_annotations(os.path.join(tiny_data, "annotation-train.csv"))
    batch = next(iter(pipeline.train_dataset(c)))
    name = batch["name"].numpy()[0].decode()
    raw = kps[name]
    got = batch["keypoints"].numpy()[0]
    vis = raw[:, 0] != -1
    # Stored at 64x32, networks at 32x16: half.
    np.testing.assert_allclose(got[vis], raw[vis] * 0.5, atol=1e-5)
    assert (got[~vis] == -1).all()


def test_pseudo_pairs_carry_target_parsing(tiny_config, tiny_data):
    c = tiny_config
    pairs = dict(formats.read_pairs(os.path.join(tiny_data, "pseudo-pairs.csv")))
    batch = next(iter(pipeline.train_dataset(c, pseudo_pairs=True)))
    for n, t in zip(batch["name"].numpy(), batch["target_name"].numpy()):
        assert pairs[n.decode()] == t.decode()
    assert batch["target_parsing"].shape == batch["parsing"].shape


def test_missing_pseudo_pairs_is_a_clear_error(tiny_config):
    tiny_config.data.pseudo_pairs = "does-not-exist.csv"
    with pytest.raises(FileNotFoundError, match="pseudo_pairs"):
        pipeline.train_dataset(tiny_config, pseudo_pairs=True)


def test_test_pairs_have_ground_truth(tiny_config, tiny_data):
    c = tiny_config
    pairs = formats.read_pairs(os.path.join(tiny_data, "pairs-test.csv"))
    batches = list(pipeline.test_dataset(c, batch_size=3))
    assert sum(int(b["image"].shape[0]) for b in batches) == len(pairs)
    b = batches[0]
    assert b["target_image"].shape == b["image"].shape
    assert [n.decode() for n in b["target_name"].numpy()] == [t for _, t in pairs[:3]]


def test_sharding_by_input_context(tiny_config):
    c = tiny_config
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    batch = next(iter(pipeline.train_dataset(c, input_context=ctx)))
    assert batch["image"].shape[0] == c.train.batch_size // 2


def test_deterministic_mode_repeats(tiny_config):
    a = next(iter(pipeline.train_dataset(tiny_config)))["name"].numpy()
    b = next(iter(pipeline.train_dataset(tiny_config)))["name"].numpy()
    assert list(a) == list(b)


def test_missing_image_names_row(tiny_config, tiny_data, tmp_path):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(tiny_data, root)
    first = next(iter(formats.read_annotations(str(root / "annotation-train.csv"))))
    os.remove(root / "train" / first)
    tiny_config.data.root = str(root)
    with pytest.raises(formats.FormatError, match=first):
        pipeline.load_index(tiny_config, "train")


def test_flip_swaps_sides():
    ex = {
        "image": tf.zeros([4, 6, 3]),
        "parsing": tf.constant(np.full([4, 6], 6, np.uint8)),  # left arm
        "keypoints": tf.constant(np.full([18, 2], -1.0, np.float32)),
    }
    kp = ex["keypoints"].numpy()
    kp[2] = [1.0, 1.0]  # Rsho
    ex["keypoints"] = tf.constant(kp)
    out = pipeline._flip(ex)
    assert int(out["parsing"][0, 0]) == 7  # right arm
    got = out["keypoints"].numpy()
    np.testing.assert_allclose(got[5], [1.0, 4.0])  # now Lsho, x mirrored
    assert (got[2] == -1).all()


def test_lip_conversion_in_graph_matches_numpy():
    from spt_tf import labels

    rng = np.random.default_rng(0)
    lip = rng.integers(0, 20, size=(8, 6)).astype(np.uint8)
    kp = np.full((18, 2), -1.0, np.float32)
    kp[4] = [1, 1]
    kp[7] = [6, 5]
    kp[10] = [7, 0]
    kp[13] = [0, 5]
    got = pipeline.lip_to_spt_tf(tf.constant(lip), tf.constant(kp), tf.constant(labels._table(None)))
    np.testing.assert_array_equal(got.numpy(), labels.lip_to_spt(lip, kp))


def test_xla_geometry_in_pipeline_matches_graph_mode(tiny_config):
    tiny_config.data.xla_geometry = True
    a = next(iter(pipeline.train_dataset(tiny_config)))
    tiny_config.data.xla_geometry = False
    b = next(iter(pipeline.train_dataset(tiny_config)))
    for k in ("source_pose", "target_mask", "transforms", "part_masks"):
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-4, rtol=1e-4)


def _buffers(ds) -> list[tuple[str, int]]:
    """(transformation, prefetch size or map parallelism) from the last one back."""
    out = []
    while ds is not None:
        for attr in ("_buffer_size", "_num_parallel_calls"):
            if hasattr(ds, attr):
                out.append((type(ds).__name__, int(getattr(ds, attr).numpy())))
        ds = getattr(ds, "_input_dataset", None)
    return out


def test_test_dataset_buffer_bound_keeps_the_pairs_and_bounds_the_pipeline(tiny_config):
    free = list(pipeline.test_dataset(tiny_config, batch_size=3))
    ds = pipeline.test_dataset(tiny_config, batch_size=3, buffer_batches=1)
    bounded = list(ds)
    assert len(bounded) == len(free)
    for a, b in zip(free, bounded):
        assert list(a["target_name"].numpy()) == list(b["target_name"].numpy())
        np.testing.assert_array_equal(a["target_pose"].numpy(), b["target_pose"].numpy())
    # prefetch 1 batch, condition 1 batch at a time, load one batch's pairs in parallel
    assert _buffers(ds) == [("_PrefetchDataset", 1), ("_ParallelMapDataset", 1), ("_ParallelMapDataset", 3)]
    assert all(v == tf.data.AUTOTUNE for _, v in _buffers(pipeline.test_dataset(tiny_config, 3)))


def test_test_dataset_rejects_a_negative_buffer(tiny_config):
    with pytest.raises(ValueError, match="buffer_batches"):
        pipeline.test_dataset(tiny_config, batch_size=3, buffer_batches=-1)
