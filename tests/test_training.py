"""Training: every stage runs, checkpoints, resumes, distributes, guards NaN, obeys SIGTERM."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import evaluation, networks
from spt_tf.training import loop, stage_specs, stages
from spt_tf.training import strategy as strategy_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _scalars(event_dir):
    tags, images = set(), set()
    for f in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            for v in e.summary.value:
                if v.metadata.plugin_data.plugin_name == "images":
                    images.add(v.tag)
                else:
                    tags.add(v.tag)
    return tags, images


def test_all_stages_ran_and_wrote_checkpoints(trained):
    wd = trained["workdir"]
    for stage in loop.STAGES:
        summary = json.load(open(os.path.join(wd, f"{stage}_summary.json")))
        assert summary["final_step"] == 2 and summary["status"] == "done"
        assert all(np.isfinite(v) for v in summary["losses"].values()), summary
        # A stage model's train_step returns exactly the values its loss_names declare.
        model_class = {"pose_detector": stages.PoseDetectorStage, "semantic": stages.SemanticStage}.get(
            stage, stages.AppearanceStage)  # fmt: skip
        assert set(summary["losses"]) == set(model_class.loss_names), (stage, sorted(summary["losses"]))
        assert tf.train.latest_checkpoint(os.path.join(wd, stage)).endswith("ckpt-2")
    cfg = json.load(open(os.path.join(wd, "config.json")))
    assert cfg["data"]["height"] == trained["config"].data.height


def test_tensorboard_has_losses_and_images(trained):
    tags, images = _scalars(os.path.join(trained["workdir"], "tensorboard", "appearance"))
    for name in ("loss/ha_total", "loss/ha_style", "loss/da_loss", "train/examples_per_second",
                 "train/learning_rate", "validation/l1"):  # fmt: skip
        assert name in tags, (name, tags)
    assert "samples" in images
    tags, _ = _scalars(os.path.join(trained["workdir"], "tensorboard", "semantic"))
    assert {"loss/hs_ce", "loss/ds_loss", "validation/parsing_pixel_accuracy"} <= tags


def test_restart_resumes_at_saved_step(trained, tmp_path):
    import shutil

    wd = str(tmp_path / "wd")
    shutil.copytree(trained["workdir"], wd)
    config = trained["config"]
    config.train.pose_detector_steps = 3
    ckpt_dir = os.path.join(wd, "pose_detector")
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(ckpt_dir))
    opt_keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("g_optimizer")]
    assert opt_keys, "optimizer state must be checkpointed"
    summary = loop.train_stage(config, wd, "pose_detector", validators=evaluation.stage_validators())
    assert summary["start_step"] == 2 and summary["final_step"] == 3
    assert tf.train.latest_checkpoint(ckpt_dir).endswith("ckpt-3")


def test_stage_order_per_ablation(trained):
    c = trained["config"]
    c.train.ablation = "baseline"
    assert loop.stages_for(c, "all") == ("pose_detector", "appearance")
    c.train.ablation = "ts_pred"
    assert loop.stages_for(c, "all") == ("pose_detector", "semantic", "appearance")
    c.train.ablation = "e2e"
    assert loop.stages_for(c, "all") == loop.STAGES
    with pytest.raises(ValueError, match="stage"):
        loop.stages_for(c, "nope")


def test_nan_loss_stops_and_keeps_last_good_checkpoint(trained, tmp_path, monkeypatch):
    import shutil

    from spt_tf import losses

    wd = str(tmp_path / "wd")
    shutil.copytree(trained["workdir"], wd)
    config = trained["config"]
    config.train.pose_detector_steps = 5
    monkeypatch.setattr(losses, "pose_detector_loss", lambda p, t: tf.reduce_mean(p, [1, 2, 3]) * np.nan)
    with pytest.raises(loop.NonFiniteLossError, match=r"pose_detector is nan at step 3"):
        loop.train_stage(config, wd, "pose_detector", validators=evaluation.stage_validators())
    assert tf.train.latest_checkpoint(os.path.join(wd, "pose_detector")).endswith("ckpt-2")


def test_mirrored_two_replicas_stay_in_sync(trained, tmp_path):
    config = trained["config"]
    config.train.cpu_replicas = 2
    strategy = strategy_lib.build_strategy(config)
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        nets = networks.Networks(config)
    config.train.semantic_steps = 2
    summary = loop.train_stage(config, str(tmp_path), "semantic", strategy=strategy, nets=nets)
    assert summary["final_step"] == 2
    for v in nets.hs.trainable_variables + nets.ds.trainable_variables:
        vals = [t.numpy() for t in v.value.values]
        assert len(vals) == 2
        np.testing.assert_array_equal(vals[0], vals[1])


def test_xla_gradients_match_graph_mode(trained):
    config = trained["config"]
    from spt_tf.data import pipeline

    batch = next(iter(pipeline.train_dataset(config, pseudo_pairs=True)))
    nets = networks.Networks(config)
    grads = {}
    for xla in (False, True):
        model = stages.SemanticStage(nets.hs, nets.ds, config, config.train.batch_size, xla=xla)
        model.compile(g_optimizer=tf.keras.optimizers.Adam(), d_optimizer=tf.keras.optimizers.Adam())
        fn = tf.function(model._gradients, jit_compile=xla)
        g, d, h, values = fn({k: v for k, v in batch.items() if v.dtype != tf.string})
        assert all(x is not None for x in g + d) and h == []
        grads[xla] = (g, d, values)
    for a, b in zip(grads[False][0] + grads[False][1], grads[True][0] + grads[True][1]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(float(grads[False][2]["hs_total"]), float(grads[True][2]["hs_total"]), rtol=1e-4)


def _train_cmd(config_arg, workdir, *extra):
    return [sys.executable, os.path.join(REPO, "train.py"), f"--config={REPO}/configs/spt.py:{config_arg}",
            f"--workdir={workdir}", *extra]  # fmt: skip


def test_sigterm_writes_checkpoint_and_exits_cleanly(trained, tmp_path):
    wd = str(tmp_path / "wd")
    proc = subprocess.Popen(
        _train_cmd("testing", wd, "--stage=pose_detector", f"--config.data.root={trained['data']}",
                   "--config.train.pose_detector_steps=100000", "--config.train.checkpoint_every=100000",
                   "--config.train.log_every=1"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.time() + 300
    events = os.path.join(wd, "tensorboard", "pose_detector")
    while time.time() < deadline and not glob.glob(os.path.join(events, "events.*")):
        time.sleep(1)
    time.sleep(3)  # let a few steps run
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-3000:]
    ckpt = tf.train.latest_checkpoint(os.path.join(wd, "pose_detector"))
    assert ckpt is not None, out.decode()[-3000:]
    assert int(ckpt.rsplit("-", 1)[1]) >= 1
    assert b"SIGTERM" in out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_multi_worker_two_processes(trained, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    wd = str(tmp_path / "wd")
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        env["CUDA_VISIBLE_DEVICES"] = ""
        procs.append(subprocess.Popen(
            _train_cmd("testing", wd, "--stage=pose_detector", f"--config.data.root={trained['data']}",
                       "--config.train.pose_detector_steps=3"),
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        ))  # fmt: skip
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    assert tf.train.latest_checkpoint(os.path.join(wd, "pose_detector")).endswith("ckpt-3")
    summary = json.load(open(os.path.join(wd, "pose_detector_summary.json")))
    assert np.isfinite(summary["losses"]["pose_detector"])


def test_joint_without_appearance_checkpoint_is_a_clear_error(trained, tmp_path):
    with pytest.raises(FileNotFoundError, match="appearance"):
        loop.train_stage(trained["config"], str(tmp_path), "joint")


def test_semantic_stage_without_pseudo_pairs_explains(trained, tmp_path):
    config = trained["config"]
    config.data.pseudo_pairs = "missing.csv"
    with pytest.raises(FileNotFoundError, match="spt_tf.data.pseudo_pairs"):
        loop.train_stage(config, str(tmp_path), "semantic")


# The progressive phases (which variables each trains, alpha's ramp) are tested at the real
# 256x176 size in tests/test_deepfashion176.py.


def test_checkpoints_hold_every_weight_and_restore_exactly(trained):
    config = trained["config"]
    path = tf.train.latest_checkpoint(os.path.join(trained["workdir"], "joint"))
    keys = set(tf.train.load_checkpoint(path).get_variable_to_shape_map())
    nets = networks.Networks(config)
    for name, model in nets.models().items():
        saved = [k for k in keys if k.startswith(f"{name}/")]
        assert len(saved) == len(model.weights), (name, len(saved), len(model.weights))
    networks.restore(nets, path, tuple(nets.models()))
    reader = tf.train.load_checkpoint(path)
    for name, model in nets.models().items():
        for key, var in networks.variables_by_path(model).items():
            ckpt_key = f"{name}/{key.replace('.', '..').replace('/', '.S')}/.ATTRIBUTES/VARIABLE_VALUE"
            np.testing.assert_array_equal(var.numpy(), reader.get_tensor(ckpt_key))


def test_cycle_l1_term_enters_the_appearance_loss_with_its_weight(tiny_config):
    """loss.lambda_cycle adds lambda * mean|I~_ps - I_ps| to L_A and nothing else changes."""
    from spt_tf.data import pipeline
    from spt_tf.losses import l1_loss

    config = tiny_config
    config.train.batch_size = 2
    nets = networks.Networks(config)
    batch = next(iter(pipeline.train_dataset(config)))
    stage = stage_specs.get("appearance").model(nets, config, 2, xla=False)
    assert stage.w["cycle"] == config.loss.lambda_cycle == 0.0
    g0, _, v0 = stage.compute_losses(batch)
    stage.w["cycle"] = 2.5
    g1, _, v1 = stage.compute_losses(batch)
    fake_s = stage.generate(batch, training=True)["fake_source"]
    expected = float(tf.reduce_sum(l1_loss(fake_s, batch["image"]))) / 2
    np.testing.assert_allclose(float(v0["ha_cycle"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(v1["ha_cycle"]), expected, rtol=1e-5)
    assert expected > 0.01
    np.testing.assert_allclose(float(g1) - float(g0), 2.5 * expected, rtol=1e-4, atol=1e-6)
    for k in ("ha_adv", "ha_content", "ha_style", "ha_pose"):
        np.testing.assert_allclose(float(v1[k]), float(v0[k]), rtol=1e-5)


def test_learning_rate_scale_is_constant_then_linear_to_zero():
    assert [loop.learning_rate_scale(s, 8, 0.5) for s in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    assert all(loop.learning_rate_scale(s, 8, 0.0) == 1.0 for s in range(8))
    assert [loop.learning_rate_scale(s, 4, 1.0) for s in range(4)] == [1, 0.75, 0.5, 0.25]


def test_learning_rate_decays_in_training_and_on_resume(tiny_config, tmp_path):
    config = tiny_config
    config.train.lr_decay_fraction = 0.5
    config.train.pose_detector_steps = 4
    config.train.log_every = 1
    config.train.checkpoint_every = 2
    wd = str(tmp_path / "wd")
    rate = float(config.train.pose_detector_learning_rate)
    loop.train_stage(config, wd, "pose_detector", max_steps=3)  # stops at 3 of 4: resumes below
    loop.train_stage(config, wd, "pose_detector")
    logged = {}
    for f in glob.glob(os.path.join(wd, "tensorboard", "pose_detector", "events.out.tfevents.*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            for v in e.summary.value:
                if v.tag == "train/learning_rate":
                    logged[e.step] = float(tf.make_ndarray(v.tensor))
    # The rate logged after step s is the one that step s used (s = 1..4 of 4, the last half decays).
    np.testing.assert_allclose([logged[s] for s in (1, 2, 3, 4)], [rate, rate, rate * 1.0, rate * 0.5], rtol=1e-6)
    config.train.lr_decay_fraction = 1.5
    with pytest.raises(ValueError, match="lr_decay_fraction"):
        loop.train_stage(config, str(tmp_path / "bad"), "pose_detector")
