"""The human parser: network shapes and serialization, the `parser` training
stage (checkpoints, resume, validation), learning on synthetic people, its evaluation,
and the applications with a predicted parsing instead of a parsing file."""

import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import testing
from spt_tf import evaluation, labels, losses, models, networks
from spt_tf.data import formats, pipeline
from spt_tf.evaluation import human_parser as parser_eval
from spt_tf.models import generators
from spt_tf.training import loop
from tests.helpers import app_args

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = 1.0 / 16


# ---------------------------------------------------------------- the network


@pytest.mark.parametrize("height,width,halvings,padded", [
    (64, 32, 4, (64, 32)), (128, 64, 5, (128, 64)), (256, 176, 6, (256, 192)), (32, 16, 3, (32, 16)),
])  # fmt: skip
def test_output_shapes_depth_and_padding(height, width, halvings, padded):
    parser = models.HumanParser(height, width, width_multiplier=TINY)
    image = tf.random.uniform([2, height, width, 3], -1.0, 1.0, seed=1)
    logits = parser(image)
    assert logits.shape == (2, height, width, labels.NUM_LABELS) and logits.dtype == tf.float32
    assert np.isfinite(logits.numpy()).all()
    assert parser.compute_output_shape((2, height, width, 3)) == tuple(logits.shape)
    # Depth follows the resolution as in the generators; odd sides are padded inside.
    assert parser.num_downsamples == halvings == generators.num_downsamples_for(height, width)
    assert (parser.padded_height, parser.padded_width) == padded
    labels_map = models.human_parser.parse_labels(parser, image).numpy()
    assert labels_map.dtype == np.uint8 and labels_map.shape == (2, height, width)
    np.testing.assert_array_equal(labels_map, np.argmax(logits.numpy(), -1))


def test_rejects_images_of_another_size():
    parser = models.HumanParser(32, 16, width_multiplier=TINY)
    with pytest.raises(ValueError, match="'image'.*expected \\[B, 32, 16, 3\\]"):
        parser(tf.zeros([1, 64, 32, 3]))
    with pytest.raises(ValueError, match="'image'"):
        parser(tf.zeros([1, 32, 16, 1]))


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def test_width_follows_the_config_and_the_hand_count():
    c = testing.get_config()
    e = generators.encoder_filters(generators.num_downsamples_for(32, 16), c.model.parser_width_multiplier)
    n = len(e) - 1
    expected = _conv(3, 3, e[0], True)
    for i in range(1, n + 1):
        expected += _conv(4, e[i - 1], e[i], False) + (2 * e[i] if i < n else 0)  # no norm on the deepest
    dec = e[1:]
    for level in range(n - 1, -1, -1):
        cin = e[n] if level == n - 1 else dec[level + 1] + e[level + 1]
        expected += _conv(4, cin, dec[level], False) + 2 * dec[level]
    expected += _conv(3, dec[0] + e[0], labels.NUM_LABELS, True)
    parser = models.build_network(models.build_human_parser(c), models.input_shapes(c)["human_parser"])
    assert parser.count_params() == expected
    assert parser.width_multiplier == c.model.parser_width_multiplier
    c.model.parser_width_multiplier = 2 * c.model.parser_width_multiplier
    wider = models.build_network(models.build_human_parser(c), models.input_shapes(c)["human_parser"])
    assert wider.count_params() > 3 * expected  # widths double: ~4x the weights


def test_config_round_trip_and_keras_file(tmp_path):
    parser = models.HumanParser(32, 16, width_multiplier=0.125, norm="instance_single", num_downsamples=2)
    x = tf.random.uniform([2, 32, 16, 3], -1.0, 1.0, seed=2)
    y = parser(x).numpy()
    config = parser.get_config()
    assert {"height", "width", "num_labels", "width_multiplier", "norm", "dropout", "num_downsamples"} <= set(config)
    clone = models.HumanParser.from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(parser.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), y, atol=1e-5)
    path = str(tmp_path / "parser.keras")
    parser.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is models.HumanParser and loaded.num_downsamples == 2
    np.testing.assert_allclose(loaded(x).numpy(), y, atol=1e-5)


def test_mixed_precision_logits_are_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        parser = models.HumanParser(32, 16, width_multiplier=TINY)
        y = parser(tf.zeros([1, 32, 16, 3]))
        assert y.dtype == tf.float32 and parser.decoder.final.compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_parser_loss_is_the_pixel_cross_entropy():
    logits = tf.constant([[[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]]])  # [1, 1, 2, 3]
    target = tf.constant([[[0, 2]]])
    p0 = np.exp(2.0) / (np.exp(2.0) + 1 + np.exp(-1.0))
    expected = (-np.log(p0) + np.log(3.0)) / 2
    np.testing.assert_allclose(losses.parser_loss(target, logits).numpy(), [expected], rtol=1e-6)


# ---------------------------------------------------------------- the stage


def _event_tags(event_dir):
    tags, images = set(), set()
    for f in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for e in tf.compat.v1.train.summary_iterator(f):
            for v in e.summary.value:
                (images if v.metadata.plugin_data.plugin_name == "images" else tags).add(v.tag)
    return tags, images


def test_parser_is_its_own_stage_not_part_of_all():
    c = testing.get_config()
    assert loop.stages_for(c, "parser") == ("parser",)
    for ablation in ("e2e", "ts_pred", "ts_gt", "baseline"):
        c.train.ablation = ablation
        assert "parser" not in loop.stages_for(c, "all")
    with pytest.raises(TypeError, match="trains the networks"):
        loop.train_stage(c, "/nonexistent", "parser", nets=networks.Networks(c))


def test_train_py_parser_stage_checkpoints_every_weight_and_resumes(tiny_config, tiny_data, tmp_path):
    wd = str(tmp_path / "wd")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), f"--config={REPO}/configs/spt.py:testing",
         f"--workdir={wd}", "--stage=parser", f"--config.data.root={tiny_data}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.load(open(os.path.join(wd, "parser_summary.json")))
    assert summary["final_step"] == 2 and summary["status"] == "done"
    assert set(summary["losses"]) == {"parser_ce", "parser_pixel_accuracy"}
    assert all(np.isfinite(v) for v in summary["losses"].values())
    # Validation on the whole test split (6 images of 32 x 16 at the config's size).
    val = summary["validation"]
    assert val["split"] == "test" and val["images"] == 6 and val["pixels"] == 6 * 32 * 16
    assert 0.0 <= val["miou"] <= 1.0 and 0.0 <= val["pixel_accuracy"] <= 1.0
    assert set(val["iou_per_label"]) == set(labels.SPT_LABELS)
    assert not os.path.exists(os.path.join(wd, "pose_detector"))  # nothing else ran
    tags, images = _event_tags(os.path.join(wd, "tensorboard", "parser"))
    assert {"loss/parser_ce", "loss/parser_pixel_accuracy", "validation/parser_miou",
            "validation/parser_pixel_accuracy"} <= tags and "samples" in images  # fmt: skip

    # The checkpoint holds every parser weight, and nothing of the other networks.
    path = tf.train.latest_checkpoint(os.path.join(wd, "parser"))
    assert path.endswith("ckpt-2")
    reader = tf.train.load_checkpoint(path)
    keys = set(reader.get_variable_to_shape_map())
    assert not [k for k in keys if k.split("/")[0] in ("hs", "ha", "ds", "da", "dface", "pose_detector")]
    assert [k for k in keys if k.startswith("g_optimizer/")], "optimizer state must be checkpointed"
    nets = networks.Networks(tiny_config, ("parser",))
    weights = networks.variables_by_path(nets.parser)
    assert len([k for k in keys if k.startswith("parser/")]) == len(weights) == len(nets.parser.weights)
    before = nets.parser(tf.zeros([1, 32, 16, 3])).numpy()
    networks.restore(nets, path, ("parser",))
    for key, var in weights.items():
        ckpt_key = f"parser/{key.replace('.', '..').replace('/', '.S')}/.ATTRIBUTES/VARIABLE_VALUE"
        np.testing.assert_array_equal(var.numpy(), reader.get_tensor(ckpt_key))
    assert not np.allclose(nets.parser(tf.zeros([1, 32, 16, 3])).numpy(), before)

    # A restart resumes at the saved step.
    tiny_config.train.parser_steps = 3
    resumed = loop.train_stage(tiny_config, wd, "parser", validators=evaluation.stage_validators())
    assert resumed["start_step"] == 2 and resumed["final_step"] == 3
    assert tf.train.latest_checkpoint(os.path.join(wd, "parser")).endswith("ckpt-3")


def test_nan_loss_stops_the_parser_stage(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "parser_loss", lambda t, lg: tf.reduce_mean(lg, [1, 2, 3]) * np.nan)
    with pytest.raises(loop.NonFiniteLossError, match="parser_ce is nan at step 1"):
        loop.train_stage(tiny_config, str(tmp_path), "parser")
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, "parser")) is None


# ---------------------------------------------------------------- learning and evaluation


class _AllBackground:
    """A stand-in parser whose logits say background everywhere."""

    def __call__(self, image, training=False):
        return tf.one_hot(tf.zeros(tf.shape(image)[:3], tf.int32), labels.NUM_LABELS)


def test_evaluation_counts_every_test_pixel_and_the_background_floor(tiny_config):
    res = parser_eval.evaluate(tiny_config, _AllBackground(), "test", batch_size=4)
    truth = np.concatenate(
        [b["parsing"].numpy() for b in pipeline.parsing_dataset(tiny_config, "test", training=False)]
    )
    assert res["images"] == len(truth) == 6 and res["pixels"] == truth.size
    bg = float((truth == labels.BACKGROUND).mean())
    assert res["pixel_accuracy"] == pytest.approx(bg) == res["all_background"]["pixel_accuracy"]
    # Only background is predicted: its IoU is the background fraction, every present label scores 0.
    assert res["iou_per_label"]["background"] == pytest.approx(bg)
    present = set(np.unique(truth)) - {labels.BACKGROUND}
    assert present and all(res["iou_per_label"][labels.SPT_LABELS[i]] == 0.0 for i in present)
    assert res["miou"] == pytest.approx(bg / (1 + len(present)))
    assert parser_eval.evaluate(tiny_config, _AllBackground(), "test", max_images=5)["images"] == 5


def test_a_few_dozen_steps_learn_to_parse(tiny_config, tmp_path):
    """Training lowers the cross entropy and beats the all-background parser on the training people."""
    c = tiny_config
    c.train.parser_steps = 60
    c.train.checkpoint_every = 1000
    c.train.log_every = 1000
    c.train.image_every = 1000
    keras.utils.set_random_seed(0)
    nets = networks.Networks(c, ("parser",))
    batch = next(iter(pipeline.parsing_dataset(c, "test", batch_size=64, training=False)))  # every test image

    def test_ce():
        return float(tf.reduce_mean(losses.parser_loss(batch["parsing"], nets.parser(batch["image"]))))

    ce0 = test_ce()
    summary = loop.train_stage(c, str(tmp_path), "parser", nets=nets, validators=evaluation.stage_validators())
    assert summary["final_step"] == 60
    # On unseen people (4 test people, 12 training images) the cross entropy halves
    # (ratios 0.45..0.51 over 5 seeds); the pixel accuracy there barely moves yet.
    assert test_ce() < 0.7 * ce0
    # On the training people: far above the all-background floor (0.71; seeds gave 0.92..0.95
    # accuracy, mIoU 0.34..0.50 against 0.08).
    train = parser_eval.evaluate(c, nets.parser, "train")
    floor = train["all_background"]["pixel_accuracy"]
    assert train["pixel_accuracy"] > floor + 0.5 * (1.0 - floor), train
    assert train["miou"] > 2 * train["all_background"]["miou"], train
    # The stage's validation is this evaluation on the test split.
    test = parser_eval.evaluate(c, nets.parser, "test")
    assert summary["validation"]["pixel_accuracy"] == pytest.approx(test["pixel_accuracy"])
    assert summary["validation"]["miou"] == pytest.approx(test["miou"])


# ---------------------------------------------------------------- applications


def _people(data):
    csv = os.path.join(data, "annotation-test.csv")
    names = list(formats.read_annotations(csv))
    return csv, [(os.path.join(data, "test", n), os.path.join(data, "parsing", n), n) for n in names]


def test_apps_with_the_trained_parser(trained, parser_workdir, tmp_path):
    import cv2

    from spt_tf import predictor
    from spt_tf.apps import __main__ as cli
    from spt_tf.apps import commands, resize

    csv, people = _people(trained["data"])
    (img_a, _, _), (img_b, _, name_b) = people[0], people[1]
    # Pose transfer from the workdir, its own parser.
    res = cli.run(app_args("pose-transfer", "--workdir", parser_workdir, "--parse", "--image", img_a,
                        "--keypoints_csv", csv, "--target_image", img_b, "--out", str(tmp_path / "pt")))  # fmt: skip
    photo = formats.read_image(img_a)
    predicted = formats.read_parsing(res["paths"]["predicted_parsing"])
    assert predicted.shape == photo.shape[:2] and predicted.max() < labels.NUM_LABELS
    assert os.path.isfile(res["paths"]["predicted_parsing_color"]) and os.path.isfile(res["paths"]["figure"])
    assert res["image"].shape == formats.read_image(img_b).shape
    # The prediction is the parser's argmax on the letterboxed photo, undone to the photo's size.
    parser = predictor.load_parser(parser_workdir)
    assert parser.size == (32, 16)
    lb = resize.fit(photo.shape[:2], parser.size)
    net_labels = parser.parse_labels(lb.image(photo)[None])[0]
    np.testing.assert_array_equal(predicted, lb.undo_labels(net_labels))
    np.testing.assert_array_equal(predicted, cv2.resize(net_labels, (32, 64), interpolation=cv2.INTER_NEAREST))
    # ...and from then on handled exactly like a given map.
    given = cli.run(app_args("pose-transfer", "--workdir", parser_workdir, "--image", img_a, "--parsing",
                          res["paths"]["predicted_parsing"], "--keypoints_csv", csv, "--target_image", img_b,
                          "--out", str(tmp_path / "given")))  # fmt: skip
    np.testing.assert_array_equal(given["image"], res["image"])
    np.testing.assert_array_equal(given["parsing"], res["parsing"])

    # Texture transfer with a SavedModel and the parser of a workdir, B a wider photo (letterboxed).
    photo_b = formats.read_image(img_b)
    formats.write_image(tmp_path / "b.png", cv2.copyMakeBorder(photo_b, 0, 0, 8, 8, cv2.BORDER_REPLICATE))
    kp_b = formats.read_annotations(csv)[name_b]
    kp_b = np.where(kp_b < 0, -1, kp_b + [0, 8])
    xy = np.stack([kp_b[:, 1], kp_b[:, 0], (kp_b[:, 0] >= 0).astype(float)], 1).reshape(-1)
    (tmp_path / "b.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": xy.tolist()}]}))
    tt = cli.run(app_args("texture-transfer", "--model", trained["export"], "--parse", "--parser_workdir",
                       parser_workdir, "--image", img_a, "--keypoints_csv", csv, "--target_image",
                       str(tmp_path / "b.png"), "--target_openpose_json", str(tmp_path / "b.json"),
                       "--out", str(tmp_path / "tt")))  # fmt: skip
    assert tt["a_on_b"].shape == (64, 48, 3) and tt["b_on_a"].shape == (64, 32, 3)
    par_b = formats.read_parsing(tt["paths"]["target_predicted_parsing"])
    assert par_b.shape == (64, 48)
    np.testing.assert_array_equal(par_b, commands.predict_parsing(parser, formats.read_image(tmp_path / "b.png")))
    np.testing.assert_array_equal(formats.read_parsing(tt["paths"]["predicted_parsing"]), predicted)

    # An edit of the predicted map: the painted labels replace it, the reconstruction uses it.
    painted = predicted.copy()
    painted[:, :16] = labels.SKIRT
    formats.write_parsing(tmp_path / "painted.png", painted)
    ed = cli.run(app_args("edit", "--workdir", parser_workdir, "--parse", "--image", img_a, "--keypoints_csv", csv,
                       "--labels", str(tmp_path / "painted.png"), "--out", str(tmp_path / "ed")))  # fmt: skip
    np.testing.assert_array_equal(ed["edited_parsing"], painted)
    assert ed["changed_pixels"] == int((painted != predicted).sum()) > 0
    assert os.path.isfile(ed["paths"]["predicted_parsing"])


def test_parse_errors_name_the_checkpoint_and_the_command(trained, tmp_path, capsys):
    from spt_tf import predictor
    from spt_tf.apps import __main__ as cli

    csv, people = _people(trained["data"])
    base = ["edit", "--image", people[0][0], "--keypoints_csv", csv, "--sleeves", "none", "--out", str(tmp_path)]
    wd = trained["workdir"]  # all stages of Algorithm 1, no parser stage
    with pytest.raises(SystemExit) as e:
        cli.main(app_args(*base, "--workdir", wd, "--parse"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert f"{os.path.join(wd, 'parser')}: no human parser checkpoint" in err
    assert f"python train.py --config=configs/spt.py:testing --workdir={wd} --stage=parser" in err
    with pytest.raises(predictor.ModelError, match="no human parser checkpoint"):
        predictor.load_parser(wd)
    with pytest.raises(SystemExit):
        cli.main(app_args(*base, "--model", trained["export"], "--parse"))
    err = capsys.readouterr().err
    assert "only a training workdir holds" in err and "--parser_workdir W" in err
    with pytest.raises(SystemExit):
        cli.main(app_args(*base, "--model", trained["export"], "--parser_workdir", wd))
    assert "--parser_workdir goes with --parse" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(app_args(*base, "--model", trained["export"]))  # no parsing at all
    assert "--parse" in capsys.readouterr().err
