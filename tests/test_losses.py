"""spt_tf.losses against hand-computed values and numpy references (tiny tensors, CPU)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import geometry, losses


def _np(x):
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


# --------------------------------------------------------------------------- GAN


def test_lsgan_losses_hand_computed():
    # Example 0: (0-1)^2 + (1-1)^2 + (2-1)^2 + (3-1)^2 = 6 over 4 patches -> 1.5; example 1: 0.
    fake = tf.constant([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]])[:, :, None, None]
    fake = tf.reshape(fake, [2, 2, 2, 1])
    np.testing.assert_allclose(_np(losses.lsgan_generator_loss(fake)), [1.5, 0.0], rtol=1e-6)
    real = tf.reshape(tf.constant([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]), [2, 2, 2, 1])
    fake_d = tf.reshape(tf.constant([[0.0, 0.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]]), [2, 2, 2, 1])
    # Ex 0: 0.5 * (0 + 4/4) = 0.5. Ex 1: 0.5 * (1 + 1) = 1.
    d = losses.lsgan_discriminator_loss(real, fake_d)
    np.testing.assert_allclose(_np(d), [0.5, 1.0], rtol=1e-6)
    assert d.dtype == tf.float32 and d.shape == (2,)


def test_vanilla_losses_hand_computed_and_reference():
    zeros = tf.zeros([1, 3, 3, 1])
    np.testing.assert_allclose(_np(losses.vanilla_generator_loss(zeros)), [math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(_np(losses.vanilla_discriminator_loss(zeros, zeros)), [math.log(2)], rtol=1e-6)

    rng = np.random.default_rng(0)
    real = rng.normal(size=(3, 4, 5, 1)) * 3
    fake = rng.normal(size=(3, 2, 2, 1)) * 3  # D outputs for reals and fakes may differ in size

    def sig(x):
        return 1.0 / (1.0 + np.exp(-x))

    ref_g = -np.log(sig(fake)).reshape(3, -1).mean(1)
    ref_d = 0.5 * (-np.log(sig(real)).reshape(3, -1).mean(1) - np.log(1 - sig(fake)).reshape(3, -1).mean(1))
    np.testing.assert_allclose(_np(losses.vanilla_generator_loss(fake)), ref_g, rtol=1e-5)
    np.testing.assert_allclose(_np(losses.vanilla_discriminator_loss(real, fake)), ref_d, rtol=1e-5)
    # Stable for large logits (a naive log(sigmoid) would give inf).
    big = tf.fill([1, 2, 2, 1], 200.0)
    assert np.isfinite(_np(losses.vanilla_discriminator_loss(-big, big))).all()
    np.testing.assert_allclose(_np(losses.vanilla_generator_loss(-big)), [200.0], rtol=1e-5)


@pytest.mark.parametrize("kind", ["lsgan", "vanilla"])
def test_dispatchers(kind):
    rng = np.random.default_rng(1)
    real = tf.constant(rng.normal(size=(2, 3, 3, 1)), tf.float32)
    fake = tf.constant(rng.normal(size=(2, 3, 3, 1)), tf.float32)
    g = getattr(losses, f"{kind}_generator_loss")(fake)
    d = getattr(losses, f"{kind}_discriminator_loss")(real, fake)
    np.testing.assert_allclose(_np(losses.generator_loss(kind, fake)), _np(g))
    np.testing.assert_allclose(_np(losses.discriminator_loss(kind, real, fake)), _np(d))
    # Masked versions: invalid examples give exactly 0, valid ones the plain loss.
    valid = tf.constant([True, False])
    mg = _np(losses.masked_generator_loss(kind, fake, valid))
    assert mg[1] == 0.0 and mg[0] == pytest.approx(_np(g)[0])
    md = _np(losses.face_discriminator_loss(kind, real, fake, tf.constant([True, True]), tf.constant([True, False])))
    np.testing.assert_allclose(md[0], _np(d)[0], rtol=1e-6)
    # Example 1: the fake term is dropped, the real term kept and halved.
    r = _np(real)[1]
    real_term = np.mean((r - 1) ** 2) if kind == "lsgan" else np.mean(np.log1p(np.exp(-r)))
    np.testing.assert_allclose(md[1], 0.5 * real_term, rtol=1e-5)


def test_unknown_kind_is_named():
    x = tf.zeros([1, 2, 2, 1])
    with pytest.raises(ValueError, match="wgan"):
        losses.generator_loss("wgan", x)
    with pytest.raises(ValueError, match="hinge"):
        losses.discriminator_loss("hinge", x, x)


def test_face_loss_on_crops_invalid_box_is_zero():
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=(1, 2), minval=-1, maxval=1)
    kp = np.full((2, 18, 2), -1.0, np.float32)
    kp[:, geometry.KP["nose"]] = (8, 16)
    kp[:, geometry.KP["Rsho"]], kp[:, geometry.KP["Lsho"]] = (12, 12), (12, 20)
    kp[:, geometry.KP["Rhip"]], kp[:, geometry.KP["Lhip"]] = (24, 12), (24, 20)
    kp[1] = -1.0  # no face in example 1
    crops = geometry.crop_faces(images, kp, 8)
    valid = geometry.face_boxes(kp)[2]
    # A stand-in "discriminator": the crops themselves as patch logits.
    g = _np(losses.face_generator_loss("lsgan", crops[..., :1], valid))
    assert g[1] == 0.0 and g[0] > 0.0


# --------------------------------------------------------------------------- H_S


def test_weighted_cross_entropy_hand_computed():
    # One example, 1 x 2 pixels, 2 labels.
    target = tf.constant([[[[1.0, 0.0], [0.0, 1.0]]]])
    probs = tf.constant([[[[0.5, 0.5], [0.25, 0.75]]]])
    mask = tf.constant([[[[1.0], [0.0]]]])
    expected = (2 * -math.log(0.5) + 1 * -math.log(0.75)) / 2
    np.testing.assert_allclose(_np(losses.weighted_cross_entropy(target, probs, mask)), [expected], rtol=1e-6)


def test_weighted_cross_entropy_body_weighs_double():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(1, 3, 4, 10))
    probs = tf.nn.softmax(tf.constant(logits, tf.float32))
    target = tf.one_hot(rng.integers(0, 10, size=(1, 3, 4)), 10)
    off = tf.zeros([1, 3, 4, 1])
    on = tf.ones([1, 3, 4, 1])
    base = _np(losses.weighted_cross_entropy(target, probs, off))[0]
    np.testing.assert_allclose(_np(losses.weighted_cross_entropy(target, probs, on))[0], 2 * base, rtol=1e-6)
    # One body pixel adds exactly its own cross entropy once more (divided by H*W).
    one = np.zeros((1, 3, 4, 1), np.float32)
    one[0, 1, 2, 0] = 1.0
    pixel = -np.log(_np(probs)[0, 1, 2][np.argmax(_np(target)[0, 1, 2])])
    got = _np(losses.weighted_cross_entropy(target, probs, one))[0]
    np.testing.assert_allclose(got, base + pixel / 12, rtol=1e-5)
    # Zero probabilities are clipped, not -inf.
    assert np.isfinite(_np(losses.weighted_cross_entropy(target, tf.zeros_like(probs), on))).all()


# --------------------------------------------------------------------------- regressions


def test_mse_and_l1_losses_hand_computed():
    a = tf.reshape(tf.constant([0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.0]), [2, 2, 2, 1])
    b = tf.reshape(tf.constant([1.0, 1.0, 0.0, 3.0, 0.0, 0.0, 0.0, -2.0]), [2, 2, 2, 1])
    # Squared: ex0 (1 + 0 + 4 + 0)/4 = 1.25, ex1 4/4 = 1. Absolute: ex0 3/4, ex1 2/4.
    for fn in (losses.pose_loss, losses.content_loss, losses.pose_detector_loss):
        np.testing.assert_allclose(_np(fn(a, b)), [1.25, 1.0], rtol=1e-6)
    np.testing.assert_allclose(_np(losses.l1_loss(a, b)), [0.75, 0.5], rtol=1e-6)


def test_losses_are_float32_under_bfloat16_inputs():
    rng = np.random.default_rng(3)
    f = tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.bfloat16)
    parsing = tf.one_hot(rng.integers(0, 10, size=(2, 8, 8)), 10, dtype=tf.bfloat16)
    kp = tf.constant(rng.uniform(0, 8, size=(2, 18, 2)), tf.float32)
    masks = geometry.part_masks(kp, 8, 8)
    outs = [
        losses.lsgan_generator_loss(f),
        losses.vanilla_discriminator_loss(f, f),
        losses.weighted_cross_entropy(parsing, tf.nn.softmax(tf.cast(parsing, tf.float32)), parsing[..., :1]),
        losses.pose_loss(f, f * 2),
        losses.content_loss(f, f * 2),
        losses.l1_loss(f, f * 2),
        losses.semantic_style_loss(f, parsing, f * 2, parsing),
        losses.mask_style_loss(f, tf.cast(masks, tf.bfloat16), f, masks),
        losses.patch_style_loss(f, kp, f * 2, kp, (8, 8), 2.0),
        losses.masked_generator_loss("vanilla", f, tf.constant([True, False])),
    ]
    for out in outs:
        assert out.dtype == tf.float32 and out.shape == (2,)
        assert np.isfinite(_np(out)).all()


def test_rank1_input_rejected():
    with pytest.raises(ValueError, match="rank"):
        losses.lsgan_generator_loss(tf.zeros([4]))


# --------------------------------------------------------------------------- Gram and style

# Features [1, 2, 2, 2]: pixel vectors f00=(1,2), f01=(3,0), f10=(0,1), f11=(2,2).
FEAT_A = np.array([[[[1, 2], [3, 0]], [[0, 1], [2, 2]]]], np.float32)
LABELS_A = np.array([[[2, 2], [3, 0]]])
# g00=(1,1), g01=(0,0), g10=(2,0), g11=(1,0).
FEAT_B = np.array([[[[1, 1], [0, 0]], [[2, 0], [1, 0]]]], np.float32)
LABELS_B = np.array([[[2, 3], [3, 3]]])


def test_gram_matrix_hand_computed():
    # sum f f^T: xx 1+9+0+4 = 14, xy 2+0+0+4 = 6, yy 4+0+1+4 = 9; divided by h*w = 4.
    g = _np(losses.gram_matrix(FEAT_A))
    np.testing.assert_allclose(g[0], [[3.5, 1.5], [1.5, 2.25]], rtol=1e-6)
    # Mask keeps f00 only; the divisor stays h*w.
    mask = np.array([[[1, 0], [0, 0]]], np.float32)
    np.testing.assert_allclose(_np(losses.gram_matrix(FEAT_A, mask))[0], [[0.25, 0.5], [0.5, 1.0]], rtol=1e-6)
    rng = np.random.default_rng(4)
    f = rng.normal(size=(3, 5, 4, 6)).astype(np.float32)
    m = rng.uniform(size=(3, 5, 4, 1)).astype(np.float32)
    ref = np.einsum("bhwc,bhwd->bcd", f * m, f * m) / 20
    np.testing.assert_allclose(_np(losses.gram_matrix(f, m)), ref, rtol=1e-5, atol=1e-6)


def test_semantic_style_loss_hand_computed_2x2x2():
    pa = tf.one_hot(LABELS_A, 10)
    pb = tf.one_hot(LABELS_B, 10)
    # Label 2: G_a = [[10,2],[2,4]]/4, G_b = [[1,1],[1,1]]/4; diff [[2.25,.25],[.25,.75]];
    #   mean of squares (5.0625 + .0625 + .0625 + .5625)/4 = 1.4375.
    # Label 3: G_a = [[0,0],[0,1]]/4, G_b = [[5,0],[0,0]]/4; diff [[-1.25,0],[0,.25]];
    #   mean of squares (1.5625 + .0625)/4 = 0.40625.
    got = _np(losses.semantic_style_loss(FEAT_A, pa, FEAT_B, pb, labels=(2, 3)))
    np.testing.assert_allclose(got, [1.4375 + 0.40625], rtol=1e-6)
    # Label 0 is in map a only (pixel f11): it contributes nothing; labels 4..9 absent in both.
    got_all = _np(losses.semantic_style_loss(FEAT_A, pa, FEAT_B, pb, labels=tuple(range(10))))
    np.testing.assert_allclose(got_all, got, rtol=1e-6)
    # ...but it does count once present in both (b's g11 relabelled 0): a strictly larger loss.
    lb = LABELS_B.copy()
    lb[0, 1, 1] = 0
    more = _np(losses.semantic_style_loss(FEAT_A, pa, FEAT_B, tf.one_hot(lb, 10), labels=(0, 2, 3)))
    # Label 0: G_a = f11 f11^T/4 = [[1,1],[1,1]], G_b = g11 g11^T/4 = [[.25,0],[0,0]]:
    #   (.5625 + 1 + 1 + 1)/4 = 0.890625; label 3 loses g11: G_b = [[1,0],[0,0]], diff
    #   [[-1,0],[0,.25]] -> (1 + .0625)/4 = 0.265625.
    np.testing.assert_allclose(more, [1.4375 + 0.265625 + 0.890625], rtol=1e-6)


def _np_style_reference(fa, la, fb, lb, labels, factor):
    """Direct numpy Eq. 8: block-mean label masks, Gram / (h*w), presence on labels."""
    b, h, w, _ = fa.shape
    out = np.zeros(b)
    for i in range(b):
        for lab in labels:
            if not ((la[i] == lab).any() and (lb[i] == lab).any()):
                continue
            grams = []
            for f, lmap in ((fa[i], la[i]), (fb[i], lb[i])):
                m = (lmap == lab).astype(np.float64).reshape(h, factor, w, factor).mean((1, 3))
                fm = f * m[..., None]
                grams.append(np.einsum("hwc,hwd->cd", fm, fm) / (h * w))
            out[i] += np.mean((grams[0] - grams[1]) ** 2)
    return out


def test_semantic_style_loss_downsampled_reference_identity_symmetry():
    rng = np.random.default_rng(5)
    fa = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
    fb = rng.normal(size=(2, 3, 2, 4)).astype(np.float32)
    la = rng.integers(0, 10, size=(2, 6, 4))
    lb = rng.integers(0, 10, size=(2, 6, 4))
    lb[0][lb[0] == 7] = 8  # label 7 absent from one map of example 0
    pa, pb = tf.one_hot(la, 10), tf.one_hot(lb, 10)
    got = _np(losses.semantic_style_loss(fa, pa, fb, pb))
    ref = _np_style_reference(fa, la, fb, lb, losses.DEFAULT_STYLE_LABELS, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    assert (got > 0).all()
    np.testing.assert_allclose(_np(losses.semantic_style_loss(fb, pb, fa, pa)), got, rtol=1e-6)
    np.testing.assert_array_equal(_np(losses.semantic_style_loss(fa, pa, fa, pa)), [0.0, 0.0])


def test_semantic_style_loss_soft_parsing_presence_and_gradient():
    rng = np.random.default_rng(6)
    f = tf.constant(rng.normal(size=(1, 2, 2, 3)), tf.float32)
    labels = np.full((1, 4, 4), 3)
    labels[0, :2] = 2  # map a: labels 2 and 3
    # Map b: argmax 3 everywhere.
    logits_b = tf.Variable(tf.one_hot(np.full((1, 4, 4), 3), 10) * 5.0)
    with tf.GradientTape() as tape:
        loss = losses.semantic_style_loss(f, tf.one_hot(labels, 10), f * 2, tf.nn.softmax(logits_b), labels=(2,))
    # Softmax gives label 2 a nonzero area in b, but it is nowhere the argmax: not present.
    assert _np(loss)[0] == 0.0
    with tf.GradientTape() as tape:
        loss = losses.semantic_style_loss(f, tf.one_hot(labels, 10), f * 2, tf.nn.softmax(logits_b), labels=(3,))
    grad = tape.gradient(loss, logits_b)
    assert _np(loss)[0] > 0 and grad is not None and np.abs(_np(grad)).sum() > 0


def test_semantic_style_loss_xla_matches_eager():
    rng = np.random.default_rng(7)
    fa = tf.constant(rng.normal(size=(2, 4, 2, 3)), tf.float32)
    fb = tf.constant(rng.normal(size=(2, 4, 2, 3)), tf.float32)
    pa = tf.one_hot(rng.integers(0, 10, size=(2, 8, 4)), 10)
    pb = tf.one_hot(rng.integers(0, 10, size=(2, 8, 4)), 10)
    eager = _np(losses.semantic_style_loss(fa, pa, fb, pb))
    xla = tf.function(losses.semantic_style_loss, jit_compile=True)(fa, pa, fb, pb)
    np.testing.assert_allclose(_np(xla), eager, rtol=1e-5)


def test_bad_style_label_rejected():
    with pytest.raises(ValueError, match="label 12"):
        losses.semantic_style_loss(FEAT_A, tf.one_hot(LABELS_A, 10), FEAT_B, tf.one_hot(LABELS_B, 10), labels=(12,))


@pytest.mark.parametrize("size_in,size_out", [((8, 6), (4, 3)), ((6, 5), (4, 2))])
def test_area_resize_matches_tf_image_resize_area(size_in, size_out):
    x = tf.random.stateless_uniform([2, *size_in, 3], seed=(3, 4))
    ref = tf.image.resize(x, size_out, method="area")
    np.testing.assert_allclose(_np(losses.area_resize(x, *size_out)), _np(ref), rtol=1e-5, atol=1e-6)


def test_mask_style_loss_equals_semantic_with_label_masks():
    rng = np.random.default_rng(8)
    fa = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    fb = rng.normal(size=(2, 2, 3, 4)).astype(np.float32)
    la = rng.integers(0, 4, size=(2, 4, 6))
    lb = rng.integers(0, 3, size=(2, 4, 6))  # label 3 absent from b
    pa, pb = tf.one_hot(la, 4), tf.one_hot(lb, 4)
    masks_a = tf.transpose(pa, [0, 3, 1, 2])  # [B, K, H, W]
    masks_b = tf.transpose(pb, [0, 3, 1, 2])
    got = _np(losses.mask_style_loss(fa, masks_a, fb, masks_b))
    ref = _np_style_reference(fa, la, fb, lb, range(4), 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(_np(losses.semantic_style_loss(fa, pa, fb, pb, labels=range(4))), got, rtol=1e-6)


def test_mask_style_loss_with_geometry_part_masks():
    rng = np.random.default_rng(9)
    kp = np.full((1, 18, 2), -1.0, np.float32)
    for name, yx in {"neck": (4, 8), "Rsho": (5, 5), "Lsho": (5, 11), "Rhip": (16, 6), "Lhip": (16, 10),
                     "Relb": (10, 4), "Rwri": (14, 3)}.items():  # fmt: skip
        kp[0, geometry.KP[name]] = yx
    masks = geometry.part_masks(kp, 32, 16)
    fa = tf.constant(rng.normal(size=(1, 16, 8, 3)), tf.float32)
    fb = tf.constant(rng.normal(size=(1, 16, 8, 3)), tf.float32)
    assert _np(losses.mask_style_loss(fa, masks, fa, masks))[0] == 0.0
    base = _np(losses.mask_style_loss(fa, masks, fb, masks))[0]
    assert base > 0
    np.testing.assert_allclose(_np(losses.mask_style_loss(fb, masks, fa, masks))[0], base, rtol=1e-6)
    # Zeroing a part in one map removes exactly that part's term (the torso, whose
    # pose-gan mask is all ones, so its term is the plain Gram difference).
    no_torso = _np(masks).copy()
    no_torso[:, 0] = 0.0
    only_torso_term = base - _np(losses.mask_style_loss(fa, masks, fb, no_torso))[0]
    ga = _np(losses.gram_matrix(fa))  # torso mask is all ones: plain Gram
    gb = _np(losses.gram_matrix(fb))
    np.testing.assert_allclose(only_torso_term, np.mean((ga - gb) ** 2), rtol=1e-4)


def test_patch_style_loss_hand_computed():
    feat_a = np.zeros((1, 4, 4, 1), np.float32)
    feat_b = np.zeros((1, 4, 4, 1), np.float32)
    feat_a[0, 1, 2, 0] = 3.0
    feat_b[0, 0, 0, 0] = 1.0
    kp_a = np.full((1, 18, 2), -1.0, np.float32)
    kp_b = np.full((1, 18, 2), -1.0, np.float32)
    kp_a[0, 0], kp_b[0, 0] = (1, 2), (0, 0)  # joint 0 in both: patch Grams 9 and 1 -> (9-1)^2
    kp_a[0, 1] = (3, 3)  # joint 1 in a only: ignored
    # Features at half the image resolution: joint (y, x) in image pixels maps to (y/2, x/2).
    got = losses.patch_style_loss(feat_a, kp_a * 2, feat_b, kp_b * 2, (8, 8), half_size=1.0)
    np.testing.assert_allclose(_np(got), [64.0], rtol=1e-6)


def test_patch_style_loss_matches_numpy_patches():
    rng = np.random.default_rng(10)
    fa = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    fb = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    kp_a = np.full((2, 18, 2), -1.0, np.float32)
    kp_b = np.full((2, 18, 2), -1.0, np.float32)
    # Centres at x.5 with a 2x2 patch sample whole pixels: rows/cols c-0.5, c+0.5.
    kp_a[:, 2], kp_b[:, 2] = (2.5, 3.5), (5.5, 1.5)
    kp_a[:, 5], kp_b[:, 5] = (4.5, 4.5), (0.5, 6.5)
    kp_b[1, 5] = -1.0
    got = _np(losses.patch_style_loss(fa, kp_a, fb, kp_b, (8, 8), half_size=1.0))
    ref = np.zeros(2)
    for i in range(2):
        for j in (2, 5):
            if (kp_b[i, j] < 0).any():
                continue
            grams = []
            for f, kp in ((fa[i], kp_a[i, j]), (fb[i], kp_b[i, j])):
                y, x = int(kp[0] - 0.5), int(kp[1] - 0.5)
                p = f[y : y + 2, x : x + 2].reshape(4, 3)
                grams.append(p.T @ p / 4)
            ref[i] += np.mean((grams[0] - grams[1]) ** 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_array_equal(_np(losses.patch_style_loss(fa, kp_a, fa, kp_a, (8, 8), 1.0)), [0.0, 0.0])
    with pytest.raises(ValueError, match="half_size"):
        losses.patch_style_loss(fa, kp_a, fb, kp_b, (8, 8), 0.0)


# --------------------------------------------------------------------------- offline statistics


def test_image_statistics_features_forward_differences():
    x = np.zeros((1, 3, 4, 3), np.float32)
    x[0, 1, 2] = [0.5, -0.5, 1.0]
    f = _np(losses.image_statistics_features(tf.constant(x), dilations=(1,)))
    assert f.shape == (1, 3, 4, 3 + 6)
    np.testing.assert_allclose(f[..., :3], x)
    dx, dy = f[..., 3:6], f[..., 6:9]
    # x[p + d] - x[p] along x: the bright pixel at (1, 2) gives +v at (1, 1) and -v at (1, 2).
    np.testing.assert_allclose(dx[0, 1, 1], x[0, 1, 2])
    np.testing.assert_allclose(dx[0, 1, 2], -x[0, 1, 2])
    np.testing.assert_allclose(dy[0, 0, 2], x[0, 1, 2])
    np.testing.assert_allclose(dy[0, 1, 2], -x[0, 1, 2])
    assert np.count_nonzero(dx) == 6 and np.count_nonzero(dy) == 6  # 2 pixels x 3 channels each


def _region_case():
    """A 6x6 image: region 0 a solid colour block, region 1 a checkerboard block."""
    img = np.full((1, 6, 6, 3), -1.0, np.float32)
    masks = np.zeros((1, 6, 6, 2), np.float32)
    img[0, :3, :3] = [0.2, 0.4, -0.6]
    masks[0, :3, :3, 0] = 1
    yy, xx = np.mgrid[3:6, 3:6]
    img[0, 3:6, 3:6] = np.where(((yy + xx) % 2 == 0)[..., None], 0.5, -0.5)
    masks[0, 3:6, 3:6, 1] = 1
    return img, masks


def test_region_statistics_hand_computed():
    img, masks = _region_case()
    colour, texture, area = losses.region_statistics(tf.constant(img), tf.constant(masks), dilations=(1, 2))
    colour, texture, area = _np(colour), _np(texture), _np(area)
    assert colour.shape == (1, 2, 4, 4) and texture.shape == (1, 2, 2, 6, 6)
    np.testing.assert_allclose(area, [[9, 9]])
    solid = colour[0, 0]
    np.testing.assert_allclose(solid[0, 0], 1.0)  # the constant channel: mean of 1
    np.testing.assert_allclose(solid[0, 1:], [0.2, 0.4, -0.6], rtol=1e-6)  # mean colour
    np.testing.assert_allclose(solid[1:, 1:], np.outer([0.2, 0.4, -0.6], [0.2, 0.4, -0.6]), rtol=1e-6)
    # Differences across the region's border (into the -1 background) are not counted.
    np.testing.assert_allclose(texture[0, 0], 0.0, atol=1e-7)
    check = texture[0, 1]
    np.testing.assert_allclose(colour[0, 1, 0, 1:], [0.5 / 9] * 3, rtol=1e-6)  # 5 of +0.5, 4 of -0.5
    # Distance 1: 6 horizontal pairs inside the block (2 per row) of difference +-1, over area 9;
    # the same vertically; at the 4 pixels with both, dx = dy = -2 v: the x-y product is +1.
    np.testing.assert_allclose(np.diag(check[0]), [6 / 9] * 6, rtol=1e-6)
    np.testing.assert_allclose(check[0, 0, 3], 4 / 9, rtol=1e-6)
    # Distance 2: the checkerboard repeats itself: no difference at all.
    np.testing.assert_allclose(check[1], 0.0, atol=1e-7)
    np.testing.assert_allclose(texture, np.swapaxes(texture, -1, -2), atol=1e-7)


def test_statistics_style_loss_sees_a_two_pixel_checkerboard():
    img, masks = _region_case()
    flat = img.copy()
    flat[0, 3:6, 3:6] = 0.5 / 9  # the checkerboard's mean colour, without its texture
    a, m = tf.constant(img), tf.constant(masks)
    same = _np(losses.statistics_style_loss(a, m, a, m))
    np.testing.assert_allclose(same, [0.0], atol=1e-12)
    diff = _np(losses.statistics_style_loss(a, m, tf.constant(flat), m))
    # Same means: the loss comes from the texture, which central differences would miss.
    assert diff[0] > 1e-3
    np.testing.assert_allclose(_np(losses.statistics_style_loss(tf.constant(flat), m, a, m)), diff, rtol=1e-6)


def test_statistics_style_loss_ignores_small_and_absent_regions():
    img, masks = _region_case()
    other = img + 0.3
    m = tf.constant(masks)
    full = _np(losses.statistics_style_loss(tf.constant(img), m, tf.constant(other), m))
    only_solid = masks.copy()
    only_solid[..., 1] = 0  # region 1 absent from the second map
    part = _np(losses.statistics_style_loss(tf.constant(img), m, tf.constant(other), tf.constant(only_solid)))
    assert 0 < part[0] < full[0]
    tiny = masks.copy()
    tiny[0, :, :, 0] = 0
    tiny[0, 0, 0, 0] = 1  # one pixel: below MIN_REGION_PIXELS
    small = _np(losses.statistics_style_loss(tf.constant(img), tf.constant(tiny), tf.constant(other), m))
    np.testing.assert_allclose(small + part, full, rtol=1e-5)


def test_statistics_style_loss_gradient_reaches_the_image():
    img, masks = _region_case()
    x = tf.Variable(img + 0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(losses.statistics_style_loss(x, tf.constant(masks), tf.constant(img),
                                                          tf.constant(masks)))  # fmt: skip
    grad = _np(tape.gradient(loss, x))
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    np.testing.assert_allclose(grad[0, :3, 3:], 0.0)  # outside every region: no gradient


def test_label_masks_hard_argmax():
    probs = np.zeros((1, 2, 2, 4), np.float32)
    probs[0, 0, 0] = [0.1, 0.6, 0.2, 0.1]
    probs[0, 0, 1] = [0.1, 0.2, 0.6, 0.1]
    probs[0, 1, :] = [0.7, 0.1, 0.1, 0.1]
    m = _np(losses.label_masks(tf.constant(probs), (1, 2)))
    np.testing.assert_array_equal(m[0, ..., 0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(m[0, ..., 1], [[0, 1], [0, 0]])
    with pytest.raises(ValueError, match="label 4"):
        losses.label_masks(tf.constant(probs), (4,))
