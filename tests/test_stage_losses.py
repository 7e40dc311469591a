"""The appearance stage's loss is the weighted sum of the tested functions of spt_tf.losses."""

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import geometry, losses, networks
from spt_tf.composite import hard
from spt_tf.data import pipeline
from spt_tf.training import stage_specs


def _mean(x, gb=2):
    return float(tf.reduce_sum(x)) / gb


@pytest.mark.parametrize("features", ["vgg", "statistics"])
def test_appearance_total_is_the_sum_of_the_tested_losses(tiny_config, features):
    config = tiny_config
    config.train.batch_size = 2
    config.loss.features = features
    config.loss.lambda_cycle = 1.5
    config.loss.lambda_identity = 2.0
    config.loss.lambda_pose = 0.5
    config.loss.lambda_face = 1.0
    nets = networks.Networks(config)
    assert nets.dface is not None  # the testing config has the face loss on
    stage = stage_specs.get("appearance").model(nets, config, 2, xla=False)
    batch = dict(next(iter(pipeline.train_dataset(config))))
    # No head in the first example's target pose: its target face crop is invalid while
    # its source face is valid, so each crop must count by its own validity.
    kp = batch["target_keypoints"].numpy()
    kp[0, [0, 1, 14, 15, 16, 17]] = geometry.MISSING
    batch["target_keypoints"] = tf.constant(kp)
    g_total, d_total, v = stage.compute_losses(batch)
    out = stage.generate(batch, training=True)  # deterministic: no dropout in the testing config
    src, tgt, back = out["source_parsing"], out["target_parsing"], out["back_parsing"]
    fake_t, fake_s, image = out["fake_target"], out["fake_source"], batch["image"]
    kp_s, kp_t = batch["keypoints"], batch["target_keypoints"]
    gan, da, dface = config.loss.gan, nets.da, nets.dface

    def d(x, *parts):
        return da(tf.concat([x, *parts], -1), training=True)

    expected = {
        "ha_adv": _mean(losses.generator_loss(gan, d(fake_t, tgt)) + losses.generator_loss(gan, d(fake_s, src))),
        "da_loss": _mean(0.5 * (losses.discriminator_loss(gan, d(image, src), d(fake_t, tgt))
                                + losses.discriminator_loss(gan, d(image, src), d(fake_s, src)))),
        "ha_pose": _mean(losses.pose_loss(nets.pose_detector(fake_t), batch["target_pose"])
                         + losses.pose_loss(nets.pose_detector(fake_s), batch["source_pose"])),
        "ha_cycle": _mean(losses.l1_loss(fake_s, image)),
    }  # fmt: skip
    if features == "vgg":
        fr, ft, fs = (nets.vgg(x) for x in (image, fake_t, fake_s))
        expected["ha_content"] = _mean(losses.content_loss(fs, fr))
        labels = tuple(config.loss.style_labels)
        expected["ha_style"] = _mean(
            losses.semantic_style_loss(fr, hard(src), ft, hard(tgt), labels=labels)
            + losses.semantic_style_loss(ft, hard(tgt), fs, hard(back), labels=labels)
        )
    else:
        d_ = tuple(config.loss.statistics_dilations)
        expected["ha_content"] = _mean(losses.content_loss(losses.image_statistics_features(fake_s, d_),
                                                           losses.image_statistics_features(image, d_)))  # fmt: skip
        m = lambda s: losses.label_masks(s, tuple(config.loss.style_labels))  # noqa: E731
        expected["ha_style"] = _mean(losses.statistics_style_loss(image, m(src), fake_t, m(tgt), d_)
                                     + losses.statistics_style_loss(fake_t, m(tgt), fake_s, m(back), d_))  # fmt: skip
    n = int(config.model.face_crop_size)
    vs, vt = geometry.face_boxes(kp_s)[2], geometry.face_boxes(kp_t)[2]
    assert bool(vs[0]) and not bool(vt[0])
    face = lambda x, kp: dface(geometry.crop_faces(x, kp, n), training=True)  # noqa: E731
    rf = face(image, kp_s)
    expected["ha_face"] = _mean(losses.face_generator_loss(gan, face(fake_t, kp_t), vt)
                                + losses.face_generator_loss(gan, face(fake_s, kp_s), vs))  # fmt: skip
    expected["dface_loss"] = _mean(
        0.5
        * (
            losses.face_discriminator_loss(gan, rf, face(fake_t, kp_t), vs, vt)
            + losses.face_discriminator_loss(gan, rf, face(fake_s, kp_s), vs, vs)
        )
    )
    same = geometry.part_transforms(kp_s, kp_s)
    ident = nets.ha({"image": image, "source_parsing": src, "source_pose": batch["source_pose"],
                     "target_parsing": src, "target_pose": batch["source_pose"], "transforms": same,
                     "part_masks": geometry.part_masks(kp_s, 32, 16)}, training=True)  # fmt: skip
    expected["ha_identity"] = _mean(losses.l1_loss(ident, image))
    for name, value in expected.items():
        np.testing.assert_allclose(float(v[name]), value, rtol=2e-4, atol=1e-6, err_msg=name)
    w = stage.w
    total = sum(w[k] * expected[f"ha_{k}"] for k in ("adv", "pose", "content", "style", "face", "cycle", "identity"))
    np.testing.assert_allclose(float(g_total), total, rtol=2e-4)
    np.testing.assert_allclose(float(d_total), expected["da_loss"] + expected["dface_loss"], rtol=2e-4)
    assert all(w[k] > 0 for k in ("adv", "pose", "content", "style", "face", "cycle", "identity"))
