"""P's PCKh on real images (spt_tf/evaluation/pose_detector.py) and the pose-loss gate of training."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import geometry
from spt_tf.evaluation import pose_detector as pose_eval
from spt_tf.training import loop


def _batches(keypoints, h=32, w=16):
    kp = tf.constant(keypoints, tf.float32)
    return [{"image": tf.zeros([len(keypoints), h, w, 3]), "keypoints": kp}]


def _kp(n=3, h=32, w=16, seed=0):
    rng = np.random.default_rng(seed)
    kp = np.stack([rng.uniform(2, h - 3, (n, 18)), rng.uniform(2, w - 3, (n, 18))], -1).astype(np.float32)
    kp[:, 0] = [8, 8]  # nose
    kp[:, 14] = [6, 6]  # right eye: a 2x2 head box with the nose
    kp[1, 5] = -1  # a missing joint is not counted
    return kp


def test_pckh_of_perfect_empty_and_shifted_detectors(monkeypatch, tiny_config):
    kp = _kp()
    monkeypatch.setattr(pose_eval.pipeline, "parsing_dataset", lambda *a, **k: _batches(kp))
    perfect = lambda x, training=False: geometry.pose_heatmaps(tf.constant(kp), 32, 16, 1.0)  # noqa: E731
    r = pose_eval.evaluate(tiny_config, perfect)
    assert r["pckh"] == 1.0 and r["images"] == 3 and r["joints"] == 3 * 18 - 1
    empty = lambda x, training=False: tf.zeros([3, 32, 16, 18])  # noqa: E731
    assert pose_eval.evaluate(tiny_config, empty)["pckh"] == 0.0
    far = kp.copy()
    far[..., 0] = np.where(far[..., 0] < 16, far[..., 0] + 12, far[..., 0] - 12)
    far[kp < 0] = -1
    shifted = lambda x, training=False: geometry.pose_heatmaps(tf.constant(far), 32, 16, 1.0)  # noqa: E731
    assert pose_eval.evaluate(tiny_config, shifted)["pckh"] < 0.2


def test_refuses_a_split_without_a_head(monkeypatch, tiny_config):
    kp = _kp()
    kp[:, [0, 1, 14, 15, 16, 17]] = -1
    monkeypatch.setattr(pose_eval.pipeline, "parsing_dataset", lambda *a, **k: _batches(kp))
    with pytest.raises(ValueError, match="no joint of the test split"):
        pose_eval.evaluate(tiny_config, lambda x, training=False: tf.zeros([3, 32, 16, 18]))


def test_stage_writes_pckh_on_real_images(trained):
    with open(os.path.join(trained["workdir"], "pose_detector_summary.json")) as f:
        validation = json.load(f)["validation"]
    assert validation["split"] == "test" and 0.0 <= validation["pckh"] <= 1.0 and validation["images"] > 0


def test_pose_loss_gate(tmp_path, tiny_config):
    c = tiny_config
    c.loss.lambda_pose = 10.0
    c.train.min_pose_pckh = 0.8
    wd = str(tmp_path)
    with pytest.raises(loop.UselessPoseDetectorError, match="does not exist"):
        loop.check_pose_detector(c, wd)
    path = os.path.join(wd, "pose_detector_summary.json")
    with open(path, "w") as f:
        json.dump({"validation": {"pckh": 0.03}}, f)
    with pytest.raises(loop.UselessPoseDetectorError, match=r"0\.030.*min_pose_pckh=0\.8"):
        loop.check_pose_detector(c, wd)
    with open(path, "w") as f:
        json.dump({"validation": {"pckh": 0.85}}, f)
    assert loop.check_pose_detector(c, wd) == 0.85
    c.loss.lambda_pose = 0.0
    os.remove(path)
    assert loop.check_pose_detector(c, wd) is None  # the pose loss is off: nothing to check
    c.loss.lambda_pose = 10.0
    c.train.min_pose_pckh = 0.0
    assert loop.check_pose_detector(c, wd) is None
    # The appearance stage refuses to start with the useless detector.
    c.train.min_pose_pckh = 0.8
    with open(path, "w") as f:
        json.dump({"validation": {"pckh": 0.03}}, f)
    with pytest.raises(loop.UselessPoseDetectorError):
        loop.train_stage(c, wd, "appearance")
