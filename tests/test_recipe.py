"""The offline recipe (configs/synthetic.py offline_recipe): its loss terms and stage options."""

import os

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import composite, evaluation, geometry, losses, networks
from spt_tf.data import pipeline
from spt_tf.training import loop, stage_specs


def _recipe_config(tiny_config):
    from configs import synthetic

    config = synthetic.offline_recipe(tiny_config)
    config.train.batch_size = 2
    return config


def test_recipe_fields_are_what_the_demo_runs():
    from configs import spt, synthetic

    demo = spt.get_config("synthetic")
    fresh = synthetic.offline_recipe(spt.get_config("testing"))
    for section, field in (("loss", "features"), ("model", "paint_input"), ("model", "paint_residual"),
                           ("model", "residual_person_only"),
                           ("loss", "lambda_identity"), ("loss", "identity_mirror_fraction"),
                           ("loss", "joint_semantic_weight"),
                           ("train", "learning_rate"), ("train", "semantic_learning_rate")):  # fmt: skip
        assert demo[section][field] == fresh[section][field], (section, field)
    assert demo.loss.features == "statistics" and demo.model.paint_residual
    assert demo.loss.identity_mirror_fraction == 0.5
    assert demo.model.residual_person_only
    assert demo.train.min_pose_pckh == 0.8 and demo.loss.lambda_pose > 0
    # The paper's configs keep the paper's losses.
    for name in ("market", "deepfashion"):
        paper = spt.get_config(name)
        assert paper.loss.features == "vgg" and not paper.model.paint_input and not paper.model.paint_residual
        assert paper.loss.lambda_identity == 0 and paper.loss.joint_semantic_weight == 0
        assert paper.loss.identity_mirror_fraction == 0
        assert not paper.model.residual_person_only


def test_identity_term_enters_with_its_weight_and_region(tiny_config):
    config = _recipe_config(tiny_config)
    config.loss.lambda_identity = 0.0
    # The plain self-reconstruction; its mirrored form has a test of its own below.
    config.loss.identity_mirror_fraction = 0.0
    nets = networks.Networks(config)
    assert nets.vgg is None  # statistics features: no VGG is built
    batch = next(iter(pipeline.train_dataset(config)))
    stage = stage_specs.get("appearance").model(nets, config, 2, xla=False)
    g0, _, v0 = stage.compute_losses(batch)
    assert float(v0["ha_identity"]) == 0.0
    stage.w["identity"] = 3.0
    g1, _, v1 = stage.compute_losses(batch)
    src = geometry.one_hot_parsing(batch["parsing"], 10)
    same = stage.ha(composite.ha_inputs(
        batch["image"], src, batch["source_pose"], src, batch["source_pose"],
        geometry.part_transforms(batch["keypoints"], batch["keypoints"]),
        geometry.part_masks(batch["keypoints"], 32, 16)), training=True)  # fmt: skip
    expected = float(tf.reduce_sum(losses.l1_loss(same, batch["image"]))) / 2
    np.testing.assert_allclose(float(v1["ha_identity"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(g1) - float(g0), 3.0 * expected, rtol=1e-4, atol=1e-6)
    stage.identity_region = "person"
    _, _, v2 = stage.compute_losses(batch)
    keep = 1.0 - src[..., :1]
    person = float(tf.reduce_sum(losses.l1_loss(same * keep, batch["image"] * keep))) / 2
    np.testing.assert_allclose(float(v2["ha_identity"]), person, rtol=1e-5)
    assert person < expected
    config.loss.identity_region = "face"
    with pytest.raises(ValueError, match="identity_region"):
        stage_specs.get("appearance").model(nets, config, 2, xla=False)


def test_joint_stage_keeps_the_pseudo_label_cross_entropy(tiny_config):
    config = _recipe_config(tiny_config)
    nets = networks.Networks(config)
    assert stage_specs.get("appearance").model(nets, config, 2, xla=False).w["semantic"] == 0.0
    joint = stage_specs.get("joint").model(nets, config, 2, xla=False)
    assert joint.w["semantic"] == config.loss.joint_semantic_weight * config.loss.lambda_ce > 0
    batch = next(iter(stage_specs.get("joint").dataset(config, None)))
    assert "target_parsing" in batch  # the joint stage reads pseudo pairs
    _, _, values = joint.compute_losses(batch)
    tgt = joint.generate(batch, training=True)["target_parsing"]
    truth = geometry.one_hot_parsing(batch["target_parsing"], 10)
    expected = float(tf.reduce_sum(losses.weighted_cross_entropy(truth, tgt, batch["target_mask"]))) / 2
    np.testing.assert_allclose(float(values["hs_ce"]), expected, rtol=1e-4)
    unpaired = next(iter(pipeline.train_dataset(config)))
    with pytest.raises(ValueError, match="pseudo pairs"):
        joint.compute_losses(unpaired)
    # The H_S term moves H_S: its gradient is non-zero.
    with tf.GradientTape() as tape:
        _, _, values = joint.compute_losses(batch)
    grads = tape.gradient(values["hs_ce"], nets.hs.trainable_variables)
    assert any(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)


def test_semantic_stage_and_joint_hs_have_their_own_learning_rates(tiny_config):
    config = _recipe_config(tiny_config)
    config.train.joint_semantic_learning_rate = 3e-5

    def rate(stage, which="g_optimizer"):
        return float(stage_specs.get(stage).optimizers(config, "float32")[which].learning_rate.numpy())

    assert rate("semantic") == pytest.approx(2e-4)
    assert rate("appearance") == rate("joint") == pytest.approx(1e-3)
    assert rate("joint", "h_optimizer") == pytest.approx(3e-5)
    assert stage_specs.get("appearance").optimizers(config, "float32")["h_optimizer"] is None


def test_joint_stage_updates_hs_with_its_own_optimizer(tiny_config):
    config = _recipe_config(tiny_config)
    nets = networks.Networks(config)
    joint = stage_specs.get("joint").model(nets, config, 2, xla=False)
    ha_ids = {id(v) for v in nets.ha.trainable_variables}
    assert {id(v) for v in joint.g_variables()} == ha_ids
    assert {id(v) for v in joint.h_variables()} == {id(v) for v in nets.hs.trainable_variables}
    assert stage_specs.get("appearance").model(nets, config, 2, xla=False).h_variables() == []
    with pytest.raises(ValueError, match="h_optimizer"):
        joint.compile(g_optimizer=tf.keras.optimizers.Adam(), d_optimizer=tf.keras.optimizers.Adam())
    g_opt, h_opt = tf.keras.optimizers.Adam(1e-3), tf.keras.optimizers.SGD(0.0)
    joint.compile(g_optimizer=g_opt, d_optimizer=tf.keras.optimizers.Adam(), h_optimizer=h_opt)
    joint.build_optimizers()
    batch = next(iter(stage_specs.get("joint").dataset(config, None)))
    hs_before = [v.numpy() for v in nets.hs.trainable_variables]
    ha_before = [v.numpy() for v in nets.ha.trainable_variables]
    joint.train_step({k: v for k, v in batch.items() if v.dtype != tf.string})
    # H_S moved by its optimizer alone (a zero rate here), H_A by the generator's.
    for a, v in zip(hs_before, nets.hs.trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(ha_before, nets.ha.trainable_variables))


def test_the_recipe_runs_every_stage_two_steps_and_exports(tiny_config, tmp_path):
    from spt_tf.export import module as export_module

    config = _recipe_config(tiny_config)
    wd = str(tmp_path / "w")
    summaries = loop.run(config, wd, "all", validators=evaluation.stage_validators())
    assert [s["stage"] for s in summaries] == ["pose_detector", "semantic", "appearance", "joint"]
    assert all(s["status"] == "done" for s in summaries)
    for s in summaries[2:]:
        assert all(np.isfinite(v) for v in s["losses"].values())
    assert summaries[3]["losses"]["hs_ce"] > 0
    keys = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(wd, "joint"))).get_variable_to_shape_map()
    assert any(k.startswith("h_optimizer/") for k in keys)  # H_S's optimizer state is checkpointed
    path = export_module.export(config, wd, str(tmp_path / "export"))
    loaded = tf.saved_model.load(path)
    batch = next(iter(pipeline.test_dataset(config, batch_size=2, max_pairs=2)))
    src = tf.cast(tf.round((batch["image"] + 1.0) * 127.5), tf.uint8)
    out = loaded.signatures["serving_default"](image=src, parsing=batch["parsing"],
                                               source_keypoints=batch["keypoints"],
                                               target_keypoints=batch["target_keypoints"])  # fmt: skip
    assert out["image"].shape == (2, 32, 16, 3)
    assert os.path.isdir(os.path.join(wd, "joint"))


def test_mirrored_self_reconstruction_renders_the_mirrored_person_into_the_image(tiny_config):
    config = _recipe_config(tiny_config)
    config.loss.identity_mirror_fraction = 1.0
    nets = networks.Networks(config)
    batch = next(iter(pipeline.train_dataset(config)))
    stage = stage_specs.get("appearance").model(nets, config, 2, xla=False)
    got = stage.generate(batch, training=True)["identity"]
    src = geometry.one_hot_parsing(batch["parsing"], 10)
    # By hand: the flipped image with its sides swapped is the source, the image's own pose the target.
    m_image = batch["image"][:, :, ::-1]
    m_parsing = tf.gather(src, [0, 1, 2, 3, 4, 5, 7, 6, 9, 8], axis=-1)[:, :, ::-1]
    m_kp = geometry.mirror_keypoints(batch["keypoints"], 16)
    cond = geometry.pair_conditioning(m_kp, batch["keypoints"], 32, 16, config.data.sigma, config.data.mask_radius)
    want = stage.ha(composite.ha_inputs(
        m_image, m_parsing, cond["source_pose"], src, batch["source_pose"], cond["transforms"],
        geometry.part_masks(batch["keypoints"], 32, 16)), training=True)  # fmt: skip
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
    # The mirrored pair's part warps are not the identity (the plain self-reconstruction's are).
    assert float(tf.reduce_max(tf.abs(cond["transforms"] - geometry.part_transforms(
        batch["keypoints"], batch["keypoints"])))) > 0.5  # fmt: skip
    # Fraction 0 is the plain self-reconstruction.
    stage.identity_mirror = 0.0
    plain = stage.generate(batch, training=True)["identity"]
    assert float(tf.reduce_max(tf.abs(plain - got))) > 1e-3
    config.loss.identity_mirror_fraction = 2.0
    with pytest.raises(ValueError, match="identity_mirror_fraction"):
        stage_specs.get("appearance").model(nets, config, 2, xla=False)
