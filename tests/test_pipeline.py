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


def _dataset_copy(tiny_data, tmp_path, tiny_config):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(tiny_data, root)
    tiny_config.data.root = str(root)
    return root


def _all_examples(config):
    return list(pipeline.parsing_dataset(config, "train", batch_size=4, training=False))


@pytest.mark.parametrize("coord, field", [(0, "keypoints_y"), (1, "keypoints_x")])
def test_keypoints_past_the_bottom_or_right_edge_are_refused(tiny_config, tiny_data, tmp_path, coord, field):
    """The frame is the image on disk (64x32 here, networks 32x16): checked when decoded."""
    root = _dataset_copy(tiny_data, tmp_path, tiny_config)
    ann = str(root / "annotation-train.csv")
    kps = formats.read_annotations(ann)
    names = list(kps)
    # The valid set holds points past the network size but inside the stored images.
    assert max(k[:, 0].max() for k in kps.values()) > tiny_config.data.height
    stored = (64, 32)
    edge = kps[names[2]].copy()
    edge[4, coord] = stored[coord] - 1 + 1.5  # within the tolerance 2: kept as it is
    formats.write_annotations(ann, {**kps, names[2]: edge})
    batches = _all_examples(tiny_config)
    got = np.concatenate([b["keypoints"].numpy() for b in batches])
    np.testing.assert_allclose(got[2, 4], edge[4] * 0.5)
    far = edge.copy()
    far[4, coord] = stored[coord] - 1 + 2.5  # beyond it
    formats.write_annotations(ann, {**kps, names[2]: far})
    index = pipeline.load_index(tiny_config, "train")  # the reader cannot know the frame
    assert index.rows[2] == 4 and index.annotations == ann
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        _all_examples(tiny_config)
    msg = str(e.value)
    assert f"{ann}, row 4, field {field}: keypoint 4 coordinate {stored[coord] - 1 + 2.5:g}" in msg
    assert names[2] in msg and "64x32 on disk" in msg and "data.keypoint_tolerance" in msg
    tiny_config.data.keypoint_tolerance = 3.0
    assert len(np.concatenate([b["name"].numpy() for b in _all_examples(tiny_config)])) == len(kps)


# 261 and -1 would become the labels 5 and 255 in uint8; 10 is one past the last label.
@pytest.mark.parametrize("value, dtype", [(300, np.int64), (261, np.int64), (-1, np.int8), (10, np.uint8)])
def test_out_of_range_npy_labels_are_refused_naming_the_file(tiny_config, tiny_data, tmp_path, value, dtype):
    root = _dataset_copy(tiny_data, tmp_path, tiny_config)
    names = list(formats.read_annotations(str(root / "annotation-train.csv")))
    png = formats.find_parsing(str(root / "parsing"), names[1])
    lab = formats.read_parsing(png).astype(dtype)
    lab[3, 4] = value
    os.remove(png)
    bad = png[:-4] + ".npy"
    np.save(bad, lab)
    with pytest.raises(tf.errors.InvalidArgumentError) as e:
        _all_examples(tiny_config)
    assert bad in str(e.value) and f"label {value} out of range 0..9" in str(e.value)


def test_npy_labels_read_as_the_png_in_the_pipeline_and_eagerly(tiny_config, tiny_data, tmp_path):
    ref = _all_examples(tiny_config)
    root = _dataset_copy(tiny_data, tmp_path, tiny_config)
    names = list(formats.read_annotations(str(root / "annotation-train.csv")))
    npys = []
    for name, dtype in zip(names[:3], (np.int64, np.int8, np.uint8)):
        png = formats.find_parsing(str(root / "parsing"), name)
        lab = formats.read_parsing(png)
        os.remove(png)
        npys.append((png[:-4] + ".npy", lab))
        np.save(npys[-1][0], lab.astype(dtype))
    got = _all_examples(tiny_config)
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a["parsing"].numpy(), b["parsing"].numpy())
    # Outside tf.data: eagerly and in a tf.function, .npy and .png alike.
    read = tf.function(pipeline._read_label_file)
    png = formats.find_parsing(str(root / "parsing"), names[3])
    for path, lab in npys + [(png, formats.read_parsing(png))]:
        for fn in (pipeline._read_label_file, read):
            out = fn(tf.constant(path))
            assert out.dtype == tf.uint8
            np.testing.assert_array_equal(out.numpy()[..., 0], lab)
    bad = str(tmp_path / "bad.npy")
    np.save(bad, np.full((4, 3), 300, np.int64))
    with pytest.raises((formats.FormatError, tf.errors.InvalidArgumentError), match="bad.npy"):
        pipeline._read_label_file(tf.constant(bad))
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad.npy: label 300"):
        read(tf.constant(bad))


def test_mirror_person_swaps_sides_of_image_parsing_and_joints():
    from spt_tf import labels

    image = np.zeros([1, 4, 6, 3], np.float32)
    image[0, 1, 0] = [1.0, 0.5, -1.0]
    parsing = np.zeros([1, 4, 6, 10], np.float32)
    parsing[..., labels.BACKGROUND] = 1.0
    parsing[0, 1, 0] = np.eye(10)[labels.LEFT_ARM]
    parsing[0, 2, 5] = np.eye(10)[labels.RIGHT_LEG]
    kp = np.full([1, 18, 2], -1.0, np.float32)
    kp[0, 2] = [1.0, 1.0]  # right shoulder at (y=1, x=1)
    kp[0, 0] = [0.5, 2.5]  # nose
    m_image, m_parsing, m_kp = (t.numpy() for t in pipeline.mirror_person(image, parsing, kp))
    np.testing.assert_array_equal(m_image[0, 1, 5], [1.0, 0.5, -1.0])
    assert m_parsing[0, 1, 5].argmax() == labels.RIGHT_ARM and m_parsing[0, 2, 0].argmax() == labels.LEFT_LEG
    assert m_parsing[0, 0, 0].argmax() == labels.BACKGROUND
    np.testing.assert_allclose(m_kp[0, 5], [1.0, 4.0])  # the left shoulder now, x mirrored
    np.testing.assert_allclose(m_kp[0, 0], [0.5, 2.5])  # the nose maps to itself
    assert (m_kp[0, 2] == -1).all()  # the right shoulder is missing: the left one was
    # Mirroring twice gives the person back.
    back = pipeline.mirror_person(m_image, m_parsing, m_kp)
    for a, b in zip(back, (image, parsing, kp)):
        np.testing.assert_array_equal(a.numpy(), b)
    with pytest.raises(ValueError, match="20 labels"):
        pipeline.mirror_person(image, np.zeros([1, 4, 6, 20], np.float32), kp)
