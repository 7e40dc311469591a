"""Export: the SavedModel reloads, matches the in-memory model, lists its signatures."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import networks, versions
from spt_tf.export import module


def _inputs(config, batch, seed=0):
    rng = np.random.default_rng(seed)
    h, w = config.data.height, config.data.width
    img = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    par = rng.integers(0, 10, (batch, h, w), dtype=np.uint8)
    src = rng.uniform(1, min(h, w) - 2, (batch, 18, 2)).astype(np.float32)
    tgt = rng.uniform(1, min(h, w) - 2, (batch, 18, 2)).astype(np.float32)
    src[:, 16] = -1.0  # a missing joint
    return img, par, src, tgt


@pytest.fixture
def restored(trained):
    config = trained["config"]
    nets = networks.Networks(config)
    networks.restore(nets, networks.latest_generator_checkpoint(trained["workdir"]), ("hs", "ha"))
    return config, module.SPTExportModule(nets.hs, nets.ha, config), tf.saved_model.load(trained["export"])


def test_saved_model_matches_in_memory_model(restored):
    config, mem, loaded = restored
    for batch in (1, 3):  # dynamic batch size
        img, par, src, tgt = _inputs(config, batch, seed=batch)
        got = loaded.signatures["serving_default"](
            image=tf.constant(img), parsing=tf.constant(par), source_keypoints=tf.constant(src),
            target_keypoints=tf.constant(tgt))  # fmt: skip
        ref = mem.serving_default(img, par, src, tgt)
        assert got["image"].shape == (batch, config.data.height, config.data.width, 3)
        assert got["image"].dtype == tf.uint8 and got["parsing"].dtype == tf.uint8
        np.testing.assert_allclose(got["image"].numpy().astype(int), ref["image"].numpy().astype(int), atol=1)
        np.testing.assert_array_equal(got["parsing"].numpy(), ref["parsing"].numpy())
        tp = loaded.signatures["transform_parsing"](parsing=tf.constant(par), source_keypoints=tf.constant(src),
                                                    target_keypoints=tf.constant(tgt))  # fmt: skip
        np.testing.assert_array_equal(tp["parsing"].numpy(), ref["parsing"].numpy())
        # render with the predicted parsing reproduces pose transfer.
        r = loaded.signatures["render"](image=tf.constant(img), parsing=tf.constant(par),
                                        source_keypoints=tf.constant(src), target_keypoints=tf.constant(tgt),
                                        target_parsing=ref["parsing"])  # fmt: skip
        np.testing.assert_allclose(r["image"].numpy().astype(int), ref["image"].numpy().astype(int), atol=1)


def test_byte_signatures_equal_tensor_signatures(restored):
    config, mem, loaded = restored
    img, par, src, tgt = _inputs(config, 2, seed=7)
    enc = tf.stack([tf.io.encode_png(x) for x in img])
    penc = tf.stack([tf.io.encode_png(x[..., None]) for x in par])
    out = loaded.signatures["serving_bytes"](image_bytes=enc, parsing_bytes=penc, source_keypoints=tf.constant(src),
                                             target_keypoints=tf.constant(tgt))  # fmt: skip
    ref = loaded.signatures["serving_default"](
        image=tf.constant(img),
        parsing=tf.constant(par),
        source_keypoints=tf.constant(src),
        target_keypoints=tf.constant(tgt),
    )
    for i in range(2):
        np.testing.assert_array_equal(tf.io.decode_png(out["image_bytes"][i]).numpy(), ref["image"][i].numpy())
        np.testing.assert_array_equal(tf.io.decode_png(out["parsing_bytes"][i])[..., 0].numpy(),
                                      ref["parsing"][i].numpy())  # fmt: skip


def test_saved_model_cli_lists_signatures(trained):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--dir", trained["export"], "--all"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    for name in module.SIGNATURES:
        assert f"signature_def['{name}']" in out
    assert "source_keypoints" in out and "target_parsing" in out


def test_versions_are_numbered_and_atomic(trained, tmp_path):
    config = trained["config"]
    nets = networks.Networks(config)
    base = str(tmp_path / "exports")
    os.makedirs(os.path.join(base, "3"))
    assert versions.next_version(base) == 4
    path = module.export(config, trained["workdir"], base, networks=nets)
    assert path.endswith(os.sep + "4")
    assert sorted(os.listdir(base)) == ["3", "4"]  # no temporary directory left
    with pytest.raises(FileExistsError):
        module.export(config, trained["workdir"], base, version=4, networks=nets)


def test_export_without_checkpoint_explains(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="train first"):
        module.export(trained["config"], str(tmp_path), str(tmp_path / "e"))


def test_local_server_serves_the_real_export(trained):
    from serving import client as client_lib
    from serving import local_server

    config = trained["config"]
    server, port = local_server.serve(os.path.dirname(trained["export"]), "spt", port=0)
    try:
        c = client_lib.SptClient(f"127.0.0.1:{port}", "spt")
        img, par, src, tgt = _inputs(config, 1, seed=3)
        out_image, out_parsing = c.pose_transfer(img, par, src, tgt)
        ref = tf.saved_model.load(trained["export"]).signatures["serving_default"](
            image=tf.constant(img), parsing=tf.constant(par), source_keypoints=tf.constant(src),
            target_keypoints=tf.constant(tgt))  # fmt: skip
        np.testing.assert_array_equal(np.asarray(out_image).reshape(ref["image"].shape), ref["image"].numpy())
        np.testing.assert_array_equal(np.asarray(out_parsing).reshape(ref["parsing"].shape), ref["parsing"].numpy())
    finally:
        server.stop()
