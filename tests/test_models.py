"""Networks of spt_tf.models: shapes, pinned sizes, serialization, gradients, XLA, mixed precision."""

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from configs import spt, testing
from spt_tf import geometry, models
from spt_tf.models import generators

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = 1.0 / 16


def make_inputs(batch, height, width, num_labels=10, seed=0, sigma=2.0, radius=1.5):
    """Every generator input, from random keypoints through spt_tf.geometry."""
    rng = np.random.default_rng(seed)

    def keypoints():
        return np.stack(
            [rng.uniform(0.1 * height, 0.9 * height, (batch, 18)), rng.uniform(0.1 * width, 0.9 * width, (batch, 18))],
            -1,
        ).astype(np.float32)

    x = geometry.pair_conditioning(keypoints(), keypoints(), height, width, sigma, radius)
    x["source_parsing"] = geometry.one_hot_parsing(rng.integers(0, num_labels, (batch, height, width)), num_labels)
    x["target_parsing"] = geometry.one_hot_parsing(rng.integers(0, num_labels, (batch, height, width)), num_labels)
    x["image"] = tf.constant(rng.uniform(-1, 1, (batch, height, width, 3)).astype(np.float32))
    return x


def tiny_config():
    return testing.get_config()


def _built(model, config, key, batch=None):
    return models.build_network(model, models.input_shapes(config)[key], batch)


# ---------------------------------------------------------------- output shapes


@pytest.mark.parametrize("height,width", [(128, 64), (256, 256), (256, 176)])
def test_generator_output_shapes(height, width):
    x = make_inputs(1, height, width, sigma=6.0, radius=4.0)
    hs = generators.SemanticGenerator(height, width, width_multiplier=TINY)
    ha = generators.AppearanceGenerator(height, width, width_multiplier=TINY)
    hp = generators.ProgressiveAppearanceGenerator(height, width, width_multiplier=TINY)
    s = hs(x).numpy()
    assert s.shape == (1, height, width, 10)
    np.testing.assert_allclose(s.sum(-1), 1.0, atol=1e-5)
    for model in (ha, hp):
        y = model(x).numpy()
        assert y.shape == (1, height, width, 3)
        assert np.all(np.abs(y) <= 1.0) and np.isfinite(y).all()
    shapes = {k: tuple(v.shape) for k, v in x.items()}
    assert [m.compute_output_shape(shapes) for m in (hs, ha, hp)] == [s.shape, y.shape, y.shape]
    # Depth follows the resolution: the larger side ends at 4 pixels.
    assert hs.num_downsamples == {128: 5, 256: 6}[height]
    assert (hs.padded_height, hs.padded_width) == {
        (128, 64): (128, 64),
        (256, 256): (256, 256),
        (256, 176): (256, 192),
    }[(height, width)]


def test_depth_rule_and_filters():
    assert generators.num_downsamples_for(128, 64) == 5  # bottleneck 4x2 (pose-gan Market)
    assert generators.num_downsamples_for(128, 128) == 5  # the SPT release at 128
    assert generators.num_downsamples_for(256, 256) == 6  # pose-gan's extra 512 level
    assert generators.num_downsamples_for(256, 176) == 6
    assert generators.num_downsamples_for(32, 16) == 3
    assert generators.encoder_filters(5, 1.0) == [64, 128, 256, 512, 512, 512]
    assert generators.encoder_filters(6, 0.5) == [32, 64, 128, 256, 256, 256, 256]
    assert generators.padded_size(176, 6) == 192


def test_padding_does_not_leak_into_the_image():
    """256x176 runs padded to 192 columns; the cropped output must not depend on the padding."""
    x = make_inputs(1, 256, 176, sigma=6.0, radius=4.0)
    ha = generators.AppearanceGenerator(256, 176, width_multiplier=TINY, num_downsamples=4)
    assert ha.padded_width == 176  # 176 = 11 * 16: no padding at this depth
    assert ha(x).shape == (1, 256, 176, 3)


def test_other_networks_shapes():
    c = tiny_config()
    nets = models.build_models(c)
    x = make_inputs(2, c.data.height, c.data.width)
    d_s = nets["semantic_discriminator"](tf.concat([x["source_parsing"], x["target_pose"]], -1))
    assert d_s.shape == (2, 8, 4, 1) and d_s.dtype == tf.float32
    d_a = nets["appearance_discriminator"](tf.concat([x["image"], x["source_parsing"]], -1))
    assert d_a.shape == (2, 8, 4, 1)
    face = nets["face_discriminator"](tf.zeros([2, 8, 8, 3]))
    assert face.shape == (2, 2, 2, 1)
    heat = nets["pose_detector"](x["image"]).numpy()
    assert heat.shape == (2, 32, 16, 18) and heat.min() >= 0.0 and heat.max() <= 1.0
    shapes = models.input_shapes(c)
    for key, out in [("semantic_discriminator", d_s), ("appearance_discriminator", d_a),
                     ("face_discriminator", face), ("pose_detector", heat)]:  # fmt: skip
        assert models.output_shapes(nets[key], shapes[key], 2) == tuple(out.shape), key
    odd = models.PatchDiscriminator(3, 3, 4)
    assert odd(tf.zeros([1, 37, 21, 3])).shape == odd.compute_output_shape((1, 37, 21, 3)) == (1, 5, 3, 1)
    with pytest.raises(ValueError, match="channels"):
        nets["appearance_discriminator"](tf.zeros([1, 32, 16, 5]))
    with pytest.raises(ValueError, match="multiples of 4"):
        models.PoseDetector(8, 1)(tf.zeros([1, 30, 16, 3]))


def test_build_models_follows_the_config():
    market = spt.get_config("market")
    nets = models.build_models(market)
    assert "face_discriminator" not in nets  # model.face_crop_size = 0 on Market
    assert isinstance(nets["appearance_generator"], models.AppearanceGenerator)
    deepfashion = spt.get_config("deepfashion")
    assert isinstance(models.build_appearance_generator(deepfashion), models.ProgressiveAppearanceGenerator)
    ch = models.discriminator_channels(market)
    assert ch == {"semantic_discriminator": 28, "appearance_discriminator": 13, "face_discriminator": 3}


# ---------------------------------------------------------------- parameter counts

# Pinned per named config (configs/spt.py DATASETS). A change here is an architecture change:
# update deliberately. Progressive deepfashion H_A (61.6 M) is close to the release's 61.5 M.
# The human parser (the `parser` stage, not in the paper) has its own width (model.parser_width_multiplier).
PINNED_PARAMS = {
    "testing": {
        "semantic_generator": 305_786,
        "appearance_generator": 304_411,
        "semantic_discriminator": 14_441,
        "appearance_discriminator": 12_521,
        "pose_detector": 38_490,
        "human_parser": 172_698,
        "face_discriminator": 11_241,
    },
    "synthetic": {
        "semantic_generator": 2_521_066,
        # paint_input: 3 more input channels of H_A's target encoder; no face loss (face_crop_size 0).
        "appearance_generator": 2_518_755,
        "semantic_discriminator": 707_489,
        "appearance_discriminator": 699_809,
        "pose_detector": 284_834,
        "human_parser": 1_472_298,
    },
    "market": {
        "semantic_generator": 61_139_850,
        "appearance_generator": 61_128_899,
        "semantic_discriminator": 2_791_233,
        "appearance_discriminator": 2_775_873,
        "pose_detector": 1_990_450,
        "human_parser": 9_024_074,
    },
    "deepfashion": {
        "semantic_generator": 82_114_442,
        "appearance_generator": 61_607_975,
        "semantic_discriminator": 2_791_233,
        "appearance_discriminator": 2_775_873,
        "pose_detector": 1_990_450,
        "human_parser": 12_170_826,
        "face_discriminator": 2_765_633,
    },
}
# 256x176: the same networks as at 256x256 (the width is padded to the stride).
PINNED_PARAMS["deepfashion176"] = PINNED_PARAMS["deepfashion"]
# Configs that run another's networks exactly (the quality run starts from a finished demo's
# P and H_S): held to the same model section and image size instead of building them again.
SAME_NETWORKS = {"synthetic_quality": "synthetic"}


def test_every_named_config_has_pinned_counts():
    missing = [name for name in spt.DATASETS if name not in PINNED_PARAMS and name not in SAME_NETWORKS]
    assert not missing, f"configs/spt.py DATASETS without pinned parameter counts: {missing}"


@pytest.mark.parametrize("name", sorted(SAME_NETWORKS))
def test_configs_that_share_networks(name):
    a, b = spt.get_config(name), spt.get_config(SAME_NETWORKS[name])
    assert a.model.to_dict() == b.model.to_dict()
    assert (a.data.height, a.data.width, a.data.name) == (b.data.height, b.data.width, b.data.name)


@pytest.mark.parametrize("name", sorted(PINNED_PARAMS))
def test_pinned_parameter_counts(name):
    config = spt.get_config(name)
    # A throwaway graph: variables are declared, never initialised (82 M random numbers cost seconds).
    with tf.Graph().as_default():
        nets = models.build_models(config)
        shapes = models.input_shapes(config)
        counts = {key: models.build_network(net, shapes[key]).count_params() for key, net in nets.items()}
    assert counts == PINNED_PARAMS[name]


def _conv(k, cin, cout, bias):
    return k * k * cin * cout + (cout if bias else 0)


def test_parameter_counts_match_hand_formula():
    """Independent count of H_S and D from the architecture description (testing config)."""
    c = tiny_config()
    n_labels, kp = c.model.num_labels, 18
    e = generators.encoder_filters(
        generators.num_downsamples_for(c.data.height, c.data.width), c.model.width_multiplier
    )
    n = len(e) - 1

    def encoder(cin):
        total = _conv(3, cin, e[0], True)
        for i in range(1, n + 1):
            total += _conv(4, e[i - 1], e[i], False) + (2 * e[i] if i < n else 0)  # norm gamma/beta
        return total

    skips = [2 * f for f in e]
    dec = [e[level + 1] for level in range(n)]
    decoder = 0
    for level in range(n - 1, -1, -1):
        cin = skips[n] if level == n - 1 else dec[level + 1] + skips[level + 1]
        decoder += _conv(4, cin, dec[level], False) + 2 * dec[level]
    decoder += _conv(3, dec[0] + skips[0], n_labels, True)
    expected_hs = encoder(n_labels + kp + 1) + encoder(kp + 1) + decoder
    hs = _built(models.build_semantic_generator(c), c, "semantic_generator")
    assert hs.count_params() == expected_hs

    f, layers_ = c.model.d_filters, c.model.d_layers
    cin = n_labels + kp
    widths = [f] + [f * min(2**i, 8) for i in range(1, layers_ + 1)]
    expected_d = _conv(4, cin, widths[0], True)
    for i in range(1, layers_ + 1):
        expected_d += _conv(4, widths[i - 1], widths[i], False) + 2 * widths[i]
    expected_d += _conv(4, widths[-1], 1, True)
    d = models.build_discriminator(c, cin)
    models.build_network(d, (32, 16, cin))
    assert d.count_params() == expected_d

    vgg = models.build_vgg_features(None)
    assert vgg.count_params() == _conv(3, 3, 64, True) + _conv(3, 64, 64, True) + _conv(3, 64, 128, True)


# ---------------------------------------------------------------- behaviour


def _generators(config):
    return {
        "semantic": models.build_semantic_generator(config),
        "appearance": models.build_appearance_generator(config),
        "progressive": models.ProgressiveAppearanceGenerator(
            config.data.height, config.data.width, width_multiplier=config.model.width_multiplier,
            deformable_levels=config.model.deformable_levels, dropout=0.0,
        ),
    }  # fmt: skip


def test_appearance_generator_uses_warps_and_drops_background():
    c = tiny_config()
    x = make_inputs(2, 32, 16)
    ha = models.build_appearance_generator(c)
    y = ha(x).numpy()
    # Background channel of both parsings is not an input (model.drop_background_channel).
    x_bg = dict(x, source_parsing=x["source_parsing"] * [0.0] + x["source_parsing"] * ([0.0] + [1.0] * 9)
                + tf.one_hot(0, 10) * 7.0)  # fmt: skip
    np.testing.assert_allclose(ha(x_bg).numpy(), y, atol=1e-6)
    with_bg = models.AppearanceGenerator(
        32, 16, width_multiplier=c.model.width_multiplier, drop_background_channel=False, deformable_levels=2
    )
    assert not np.allclose(with_bg(x_bg).numpy(), with_bg(x).numpy(), atol=1e-4)
    # The deformable skips read the transforms; without them the transforms are ignored.
    x_t = dict(x, transforms=geometry.scale_transforms(x["transforms"], 0.5))
    assert not np.allclose(ha(x_t).numpy(), y, atol=1e-4)
    plain = models.AppearanceGenerator(32, 16, width_multiplier=c.model.width_multiplier, deformable_levels=0)
    np.testing.assert_allclose(plain(x_t).numpy(), plain(x).numpy(), atol=1e-6)


def test_generators_reject_bad_inputs():
    c = tiny_config()
    x = make_inputs(1, 32, 16)
    ha = models.build_appearance_generator(c)
    with pytest.raises(KeyError, match="part_masks"):
        ha({k: v for k, v in x.items() if k != "part_masks"})
    with pytest.raises(ValueError, match="'target_pose'"):
        ha(dict(x, target_pose=x["target_pose"][..., :17]))
    with pytest.raises(ValueError, match="deformable_levels"):
        models.AppearanceGenerator(32, 16, deformable_levels=9)
    with pytest.raises(ValueError, match="model.norm"):
        models.SemanticGenerator(32, 16, norm="layer")


def test_progressive_fade_in_and_phases():
    c = tiny_config()
    x = make_inputs(2, 32, 16)
    hp = _generators(c)["progressive"]
    assert float(hp.alpha.numpy()) == 1.0  # a finished network by default
    y1 = hp(x).numpy()
    hp.set_alpha(0.0)
    y0 = hp(x).numpy()
    # alpha = 0: the global generator alone, on the inputs pooled inside, upsampled bilinearly.
    g = hp.global_generator(hp.downsample_inputs(x)).numpy()
    assert g.shape == (2, 16, 8, 3)
    np.testing.assert_allclose(y0, tf.image.resize(g, (32, 16), method="bilinear").numpy(), atol=1e-5)
    hp.set_alpha(0.3)
    np.testing.assert_allclose(hp(x).numpy(), 0.3 * y1 + 0.7 * y0, atol=1e-5)
    assert not np.allclose(y0, y1, atol=1e-3)
    # Phases: global and local partition the trainable variables; alpha is not trainable.
    all_ids = [id(v) for v in hp.trainable_variables]
    g_ids = {id(v) for v in hp.variables_for_phase("global")}
    l_ids = {id(v) for v in hp.variables_for_phase("local")}
    assert g_ids and l_ids and not g_ids & l_ids and g_ids | l_ids == set(all_ids)
    assert g_ids == {id(v) for v in hp.global_generator.trainable_variables}
    assert id(hp.alpha) not in set(all_ids) and hp.alpha in hp.non_trainable_variables
    assert len(hp.variables_for_phase("all")) == len(all_ids)
    with pytest.raises(ValueError, match="phase"):
        hp.variables_for_phase("both")


def test_paint_by_labels_equals_the_paint_baseline_and_passes_gradients():
    from spt_tf.evaluation import metrics

    rng = np.random.default_rng(4)
    src_labels = rng.integers(0, 10, (2, 32, 16))
    src_labels[:, :2, :10] = np.arange(10)  # every label present in the source
    tgt_labels = rng.integers(0, 10, (2, 32, 16))
    image = rng.integers(0, 256, (2, 32, 16, 3)).astype(np.uint8)
    x = tf.constant(image.astype(np.float32) / 127.5 - 1.0)
    target = tf.Variable(geometry.one_hot_parsing(tgt_labels, 10))
    with tf.GradientTape() as tape:
        painted = generators.paint_by_labels(x, geometry.one_hot_parsing(src_labels, 10), target)
        loss = tf.reduce_sum(painted)
    expected = metrics.paint_parsing(image, src_labels, tgt_labels).astype(np.float32) / 127.5 - 1.0
    np.testing.assert_allclose(painted.numpy(), expected, atol=1.0 / 127.5)  # the baseline rounds to uint8
    grad = tape.gradient(loss, target).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


def test_paint_input_feeds_the_target_encoder():
    x = make_inputs(2, 32, 16, seed=5)
    ha = models.AppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=0, paint_input=True)
    plain = models.AppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=0)
    y = ha(x).numpy()
    plain(x)
    first = ha.target_encoder.first.kernel.shape
    assert first[2] == plain.target_encoder.first.kernel.shape[2] + 3
    # Without warps the source image reaches the output through the paint as well as
    # the appearance encoder's bottleneck; a recoloured source changes the painted input.
    assert not np.allclose(ha(dict(x, image=-x["image"])).numpy(), y, atol=1e-4)
    c = tiny_config()
    c.model.paint_input = True
    assert models.build_appearance_generator(c).paint_input
    c.model.progressive = True
    assert models.build_appearance_generator(c).global_generator.paint_input


def _zero(layer):
    for v in layer.weights:
        v.assign(tf.zeros_like(v))


def test_paint_residual_starts_at_the_paint_and_learns_on_top_of_it():
    x = make_inputs(2, 32, 16, seed=6)
    paint = generators.paint_by_labels(x["image"], x["source_parsing"], x["target_parsing"]).numpy()
    expected = np.tanh(np.arctanh(np.clip(paint, -generators.PAINT_CLIP, generators.PAINT_CLIP)))
    ha = models.AppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=2, paint_residual=True)
    y = ha(x).numpy()
    assert not np.allclose(y, expected, atol=1e-3)  # random decoder: a residual on top of the paint
    _zero(ha.decoder.final)  # zero logits: the output is the (clipped) painted parsing
    np.testing.assert_allclose(ha(x).numpy(), expected, atol=1e-5)
    # residual_person_only: the background of the target parsing keeps the paint exactly.
    hb = models.AppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=2, paint_residual=True,
                                    residual_person_only=True)  # fmt: skip
    yb = hb(x).numpy()
    bg = x["target_parsing"].numpy()[..., 0] > 0.5
    np.testing.assert_allclose(yb[bg], expected[bg], atol=1e-5)
    assert not np.allclose(yb[~bg], expected[~bg], atol=1e-3)
    with pytest.raises(ValueError, match="needs model.paint_residual"):
        models.AppearanceGenerator(32, 16, residual_person_only=True)
    hp = models.ProgressiveAppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=2,
                                               paint_residual=True)  # fmt: skip
    hp(x)
    _zero(hp.local_out)
    np.testing.assert_allclose(hp(x).numpy(), expected, atol=1e-5)  # alpha 1: the local output
    assert hp.global_generator.paint_residual
    c = tiny_config()
    c.model.paint_residual = True
    assert models.build_appearance_generator(c).paint_residual


def test_label_gated_masks_on_a_hand_made_shift():
    """A part moved 3 px right: its mask passes only where the source label 3 lands on the
    target's label 3, never on the background or on another label."""
    h, w = 16, 24
    rng = np.random.default_rng(0)
    kp = np.stack([rng.uniform(2, 13, 18), rng.uniform(4, 12, 18)], -1)[None].astype(np.float32)
    moved = kp + np.array([0.0, 3.0], np.float32)
    transforms = geometry.part_transforms(kp, moved)  # target -> source: x - 3
    src = np.zeros((1, h, w), np.int32)
    src[0, 4:12, 5:10] = 3
    src[0, 12:, 5:10] = 5
    tgt = np.zeros((1, h, w), np.int32)
    tgt[0, 4:12, 8:13] = 3  # where the source's 3 lands
    tgt[0, 12:, 8:13] = 7  # the source's 5 lands on a 7: no agreement
    masks = tf.ones((1, 10, h, w))
    gated = generators.label_gated_masks(
        geometry.one_hot_parsing(src, 10), geometry.one_hot_parsing(tgt, 10), transforms, masks
    ).numpy()
    expected = np.zeros((h, w), np.float32)
    expected[4:12, 8:13] = 1.0
    torso = 0  # every part moved alike: check one, and that all agree
    np.testing.assert_allclose(transforms.numpy()[0, :, 2], -3.0, atol=1e-3)
    np.testing.assert_allclose(gated[0, torso], expected, atol=1e-5)
    np.testing.assert_allclose(gated[0], np.broadcast_to(gated[0, :1], gated[0].shape), atol=1e-5)
    # Background to background never passes (label 0 is left out).
    none = generators.label_gated_masks(
        geometry.one_hot_parsing(np.zeros_like(src), 10), geometry.one_hot_parsing(np.zeros_like(tgt), 10),
        transforms, masks,
    )  # fmt: skip
    assert float(tf.reduce_max(none)) == 0.0


@pytest.mark.parametrize("progressive", [False, True])
def test_skip_label_gate_is_the_gated_masks(progressive):
    """A gated H_A is the same network run on the gated part masks (its weights, its inputs)."""
    x = make_inputs(2, 32, 16, seed=8)
    cls = models.ProgressiveAppearanceGenerator if progressive else models.AppearanceGenerator
    kw = dict(width_multiplier=0.125, deformable_levels=2, paint_residual=True)
    gated, plain = cls(32, 16, skip_label_gate=True, **kw), cls(32, 16, **kw)
    y = gated(x).numpy()
    plain(x)
    plain.set_weights(gated.get_weights())
    pre = generators.label_gated_masks(x["source_parsing"], x["target_parsing"], x["transforms"], x["part_masks"])
    if not progressive:
        np.testing.assert_allclose(plain(dict(x, part_masks=pre)).numpy(), y, atol=1e-5)
    else:  # the global generator gates its own half-size inputs
        assert gated.global_generator.skip_label_gate
    assert not np.allclose(plain(x).numpy(), y, atol=1e-4)  # the gate changes the output
    c = tiny_config()
    c.model.skip_label_gate = True
    c.model.progressive = progressive
    assert models.build_appearance_generator(c).skip_label_gate


# ---------------------------------------------------------------- serialization


def _model_cases():
    c = tiny_config()
    x = make_inputs(2, 32, 16, seed=1)
    gens = _generators(c)
    gens["progressive"].set_alpha(0.3)
    return [
        ("semantic", gens["semantic"], x),
        ("appearance", gens["appearance"], x),
        ("progressive", gens["progressive"], x),
        ("appearance_single_norm", models.AppearanceGenerator(32, 16, width_multiplier=0.125, norm="instance_single",
                                                              deformable_levels=2), x),
        ("discriminator", models.build_discriminator(c, 13), tf.concat([x["image"], x["source_parsing"]], -1)),
        ("pose_detector", models.build_pose_detector(c), x["image"]),
        ("appearance_paint", models.AppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=2,
                                                        paint_input=True), x),
        ("progressive_paint", models.ProgressiveAppearanceGenerator(32, 16, width_multiplier=0.125,
                                                                    deformable_levels=2, paint_input=True,
                                                                    paint_residual=True), x),
        ("appearance_residual", models.AppearanceGenerator(32, 16, width_multiplier=0.125, deformable_levels=2,
                                                           paint_residual=True, residual_person_only=True), x),
        ("progressive_gate", models.ProgressiveAppearanceGenerator(32, 16, width_multiplier=0.125,
                                                                   deformable_levels=2, skip_label_gate=True), x),
    ]  # fmt: skip


@pytest.mark.parametrize("case", range(10))
def test_model_config_round_trip_and_keras_file(case, tmp_path):
    name, model, x = _model_cases()[case]
    y = model(x, training=False).numpy()
    config = model.get_config()
    clone = type(model).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), y, atol=1e-5)
    path = os.path.join(tmp_path, f"{name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), y, atol=1e-5)
    if name == "progressive":
        assert float(loaded.alpha.numpy()) == pytest.approx(0.3)


def test_encoder_decoder_config_round_trip():
    enc = generators.UNetEncoder([4, 8, 8], norm="batch", norm_last=True, name="e")
    dec = generators.UNetDecoder([8, 8], out_channels=3, norm="none", dropout=0.5, name="d")
    for layer in (enc, dec):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    skips = enc(tf.zeros([1, 8, 8, 2]))
    assert [tuple(s.shape) for s in skips] == [(1, 8, 8, 4), (1, 4, 4, 8), (1, 2, 2, 8)]
    assert enc.compute_output_shape((1, 8, 8, 2)) == [tuple(s.shape) for s in skips]


# ---------------------------------------------------------------- gradients, XLA, precision


@pytest.mark.parametrize("kind", ["semantic", "appearance", "progressive"])
def test_gradients_reach_every_trainable_variable(kind):
    c = tiny_config()
    model = _generators(c)[kind]
    if kind == "progressive":
        model.set_alpha(0.5)
    x = make_inputs(2, 32, 16, seed=2)
    weights = tf.constant(np.random.default_rng(5).normal(size=(32, 16, 10 if kind == "semantic" else 3)),
                          tf.float32)  # fmt: skip
    model(x)
    with tf.GradientTape() as tape:
        # A weighted sum: the plain mean of a softmax is constant (its gradient is 0).
        loss = tf.reduce_mean(model(x, training=True) * weights)
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables) > 0
    dead = [v.path for v, g in zip(model.trainable_variables, grads)
            if g is None or not np.any(tf.convert_to_tensor(g).numpy())]  # fmt: skip
    assert not dead, f"no gradient reaches {dead}"


@pytest.mark.parametrize("kind", ["semantic", "appearance"])
def test_forward_backward_compile_under_xla(kind):
    # Two halvings (3 levels: 2 warped, 1 not) keep the XLA compile short; the code paths are
    # those of any depth.
    if kind == "semantic":
        model = models.SemanticGenerator(32, 16, width_multiplier=0.125, num_downsamples=2)
    else:
        model = models.AppearanceGenerator(32, 16, width_multiplier=0.125, num_downsamples=2, deformable_levels=2)
    x = make_inputs(2, 32, 16, seed=3)
    model(x)

    def step(inputs):
        with tf.GradientTape() as tape:
            y = model(inputs, training=True)
            loss = tf.reduce_mean(y * tf.range(y.shape[-1], dtype=tf.float32))
        return y, tape.gradient(loss, model.trainable_variables)

    y_plain, g_plain = tf.function(step)(x)
    y_xla, g_xla = tf.function(step, jit_compile=True)(x)
    np.testing.assert_allclose(y_xla.numpy(), y_plain.numpy(), atol=1e-4)
    for a, b in zip(g_xla, g_plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_outputs_are_float32(mixed_bfloat16):
    c = tiny_config()
    x = make_inputs(2, 32, 16, seed=4)
    gens = _generators(c)
    gens["progressive"].set_alpha(0.5)
    for name, model in gens.items():
        y = model(x)
        assert y.dtype == tf.float32, name
        assert np.isfinite(y.numpy()).all(), name
    assert gens["appearance"].decoder.final.compute_dtype == "bfloat16"  # the convs do run in bfloat16
    np.testing.assert_allclose(gens["semantic"](x).numpy().sum(-1), 1.0, atol=1e-5)
    d = models.build_discriminator(c, 3)
    assert d(x["image"]).dtype == tf.float32
    assert models.build_pose_detector(c)(x["image"]).dtype == tf.float32
    # Mixed precision agrees with float32 within bfloat16 accuracy.
    keras.mixed_precision.set_global_policy("float32")
    ref = models.build_appearance_generator(c)
    ref(x)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = models.build_appearance_generator(c)
    mixed(x)
    mixed.set_weights(ref.get_weights())
    assert np.abs(mixed(x).numpy() - ref(x).numpy()).max() < 0.1


# ---------------------------------------------------------------- VGG


def test_vgg_preprocessing_matches_keras():
    rng = np.random.default_rng(6)
    images = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    ours = models.VGGPreprocess()(images).numpy()
    ref = keras.applications.vgg16.preprocess_input((images + 1.0) * 127.5)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_vgg_random_weights_are_loud_and_frozen(caplog):
    c = tiny_config()
    with caplog.at_level(logging.WARNING):
        vgg = models.build_vgg(c)  # testing config: vgg_weights = ""
    assert any("RANDOM" in r.getMessage() for r in caplog.records)
    assert vgg.trainable_variables == [] and not vgg.trainable
    feats = vgg(np.zeros((2, 32, 16, 3), np.float32)).numpy()
    assert feats.shape == (2, 16, 8, 128) and feats.min() >= 0.0  # relu2_1


def test_vgg_keras_file_round_trip(tmp_path):
    vgg = models.build_vgg_features(None)
    images = np.random.default_rng(8).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    path = os.path.join(tmp_path, "vgg.keras")
    vgg.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("preprocess"), models.VGGPreprocess)
    np.testing.assert_allclose(loaded(images).numpy(), vgg(images).numpy(), atol=1e-5)


def test_vgg_weights_from_files(tmp_path):
    rng = np.random.default_rng(7)
    images = rng.uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
    # Weights of the truncated model itself.
    source = models.build_vgg_features(None)
    own = os.path.join(tmp_path, "relu2_1.weights.h5")
    source.save_weights(own)
    np.testing.assert_allclose(models.build_vgg_features(own)(images).numpy(), source(images).numpy(), atol=1e-5)
    # Weights of the full keras.applications.VGG16 (what the ImageNet download is).
    full = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    full_path = os.path.join(tmp_path, "vgg16_notop.weights.h5")
    full.save_weights(full_path)
    loaded = models.build_vgg_features(full_path)
    ref = keras.Model(full.input, full.get_layer("block2_conv1").output)(
        keras.applications.vgg16.preprocess_input((images + 1.0) * 127.5)
    )
    np.testing.assert_allclose(loaded(images).numpy(), ref.numpy(), rtol=1e-4, atol=1e-3)
    with pytest.raises(FileNotFoundError, match="model.vgg_weights"):
        models.build_vgg_features(os.path.join(tmp_path, "missing.h5"))
    other = os.path.join(tmp_path, "other.weights.h5")
    d = models.PatchDiscriminator(3, 1, 4)
    d(tf.zeros([1, 8, 8, 3]))
    d.save_weights(other)
    with pytest.raises(ValueError, match="neither"):
        models.build_vgg_features(other)


# ---------------------------------------------------------------- CLI


def test_summary_cli_prints_every_network():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, "-m", "spt_tf.models", "--config", "configs/testing.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    pinned = PINNED_PARAMS["testing"]
    for key, count in pinned.items():
        assert f"{key} (" in out.stdout and f"{count:,} parameters" in out.stdout, key
    assert "output:  [1, 32, 16, 3]" in out.stdout  # H_A
    assert "vgg" in out.stdout
