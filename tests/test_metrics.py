"""spt_tf.evaluation.metrics against scikit-image / scipy references and hand-made cases."""

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage
import scipy.special
import tensorflow as tf
from skimage.metrics import structural_similarity

from spt_tf import geometry
from spt_tf.evaluation import metrics


def _field_ssim(real, gen, data_range=None):
    """The field's call (PG2 / Deformable GAN), in today's scikit-image spelling."""
    if data_range is None:
        data_range = float(gen.max()) - float(gen.min())
    return structural_similarity(
        real,
        gen,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )


def _image_pairs():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:24]
    smooth = np.stack([127 + 100 * np.sin(yy / 5 + c) * np.cos(xx / 7) for c in range(3)], -1)
    real = np.clip(smooth, 0, 255).astype(np.uint8)
    noisy = np.clip(smooth + rng.normal(0, 30, smooth.shape), 0, 255).astype(np.uint8)
    narrow = (100 + rng.integers(0, 11, size=smooth.shape)).astype(np.uint8)  # range 10
    rand_a = rng.integers(0, 256, size=(40, 24, 3)).astype(np.uint8)
    rand_b = rng.integers(0, 256, size=(40, 24, 3)).astype(np.uint8)
    return [(real, noisy), (real, narrow), (rand_a, rand_b), (real, real)]


@pytest.mark.parametrize("case", range(4))
def test_ssim_equals_skimage(case):
    real, gen = _image_pairs()[case]
    ref = _field_ssim(real, gen)
    assert abs(metrics.ssim(real, gen) - ref) < 1e-6
    got32 = metrics.ssim_batch(real[None], gen[None]).numpy()
    got64 = metrics.ssim_batch(real[None], gen[None], dtype=tf.float64).numpy()
    assert abs(got32[0] - ref) < 1e-4
    assert abs(got64[0] - ref) < 1e-9


def test_ssim_batch_explicit_range_float_images_and_batching():
    pairs = _image_pairs()
    real = np.stack([p[0] for p in pairs])
    gen = np.stack([p[1] for p in pairs])
    refs = [_field_ssim(r, g) for r, g in zip(real, gen)]
    np.testing.assert_allclose(metrics.ssim_batch(real, gen).numpy(), refs, atol=1e-4)
    # Explicit data range, scalar and per example.
    ref255 = [_field_ssim(r, g, 255) for r, g in zip(real, gen)]
    np.testing.assert_allclose(metrics.ssim_batch(real, gen, 255.0).numpy(), ref255, atol=1e-4)
    np.testing.assert_allclose(metrics.ssim_batch(real, gen, [255.0] * 4).numpy(), ref255, atol=1e-4)
    assert abs(metrics.ssim(real[0], gen[0], 255) - ref255[0]) < 1e-6
    # Float images in [-1, 1].
    fr = real.astype(np.float64) / 127.5 - 1
    fg = gen.astype(np.float64) / 127.5 - 1
    reff = [_field_ssim(r, g) for r, g in zip(fr, fg)]
    np.testing.assert_allclose(metrics.ssim_batch(fr, fg).numpy(), reff, atol=1e-4)
    # Compiles under XLA with the same values.
    xla = tf.function(metrics.ssim_batch, jit_compile=True)(tf.constant(real), tf.constant(gen))
    np.testing.assert_allclose(xla.numpy(), refs, atol=1e-4)


def test_ssim_flat_generated_image_matches_skimage():
    real = _image_pairs()[0][0]
    flat = np.full_like(real, 90)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = _field_ssim(real, flat)  # R = 0: constants vanish; 0 where the real image varies
    assert abs(metrics.ssim(real, flat) - ref) < 1e-9
    assert abs(metrics.ssim_batch(real[None], flat[None]).numpy()[0] - ref) < 1e-6


def test_ssim_rejects_bad_shapes():
    a = np.zeros((10, 30, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim(a, a)
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim_batch(a[None], a[None])
    with pytest.raises(ValueError, match="differ"):
        metrics.ssim_batch(np.zeros((1, 12, 12, 3)), np.zeros((1, 12, 13, 3)))


def test_evaluation_mask_single_joint_is_a_closed_disc():
    kp = np.full((1, 18, 2), -1.0, np.float32)
    kp[0, geometry.KP["nose"]] = (12, 10)
    mask = metrics.evaluation_masks(kp, 24, 20)
    assert mask.shape == (1, 24, 20, 1) and mask.dtype == np.float32
    yy, xx = np.mgrid[0:24, 0:20]
    disc = (yy - 12) ** 2 + (xx - 10) ** 2 <= 16
    square = np.ones((5, 5), bool)
    ref = scipy.ndimage.binary_erosion(scipy.ndimage.binary_dilation(disc, square), square)
    np.testing.assert_array_equal(mask[0, ..., 0], ref.astype(np.float32))
    assert 45 <= ref.sum() <= 60  # a radius-4 disc, not an empty or full map


def test_mask_ssim_and_apply_mask():
    real, gen = _image_pairs()[0]
    kp = np.full((1, 18, 2), -1.0, np.float32)
    kp[0, geometry.KP["neck"]], kp[0, geometry.KP["Rhip"]] = (8, 12), (30, 8)
    mask = metrics.evaluation_masks(kp, 40, 24)[0]
    masked = metrics.apply_mask(gen, mask)
    assert masked.dtype == np.uint8
    np.testing.assert_array_equal(masked[mask[..., 0] == 0], 0)
    np.testing.assert_array_equal(masked[mask[..., 0] == 1], gen[mask[..., 0] == 1])
    ref = _field_ssim(real * mask.astype(np.uint8), gen * mask.astype(np.uint8))
    assert abs(metrics.mask_ssim(real, gen, mask) - ref) < 1e-6
    got = metrics.mask_ssim_batch(real[None], gen[None], mask[None]).numpy()[0]
    assert abs(got - ref) < 1e-4
    tf_masked = metrics.apply_mask(tf.constant(gen[None]), tf.constant(mask[None]))
    np.testing.assert_array_equal(tf_masked.numpy()[0], masked)
    with pytest.raises(ValueError, match="mask shape"):
        metrics.apply_mask(gen, mask[:-1])


# --------------------------------------------------------------------------- IS / FID


def _openai_is(probs, splits):
    scores = []
    n = probs.shape[0]
    for i in range(splits):
        part = probs[(i * n // splits) : ((i + 1) * n // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return np.mean(scores), np.std(scores)


def test_inception_score_matches_reference():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, size=(53, 12))  # uneven split sizes
    mean, std = metrics.inception_score_from_logits(logits, splits=5)
    ref_mean, ref_std = _openai_is(scipy.special.softmax(logits, axis=1), 5)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)
    assert 1.0 < mean < 12.0 and std > 0


def test_inception_score_extremes():
    # Identical predictions: p(y|x) = p(y), score 1.
    mean, std = metrics.inception_score_from_logits(np.zeros((20, 7)), splits=2)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0, abs=1e-12)
    # Confident and spread evenly over K classes: score K (saturated logits stay finite).
    logits = 1000.0 * np.eye(8)
    assert metrics.inception_score_from_logits(logits, splits=1)[0] == pytest.approx(8.0)
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_score_from_logits(np.zeros((3, 4)), splits=10)


@pytest.mark.parametrize("batch", [1, 7, 53])
def test_streaming_inception_score_equals_batch(batch):
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, size=(53, 12))  # batches straddle the uneven split bounds
    logits[5] = 1000.0 * np.eye(12)[3]  # a saturated row: p log p with exact zeros
    acc = metrics.StreamingInceptionScore(53, splits=5)
    for lo in range(0, 53, batch):
        acc.update(logits[lo : lo + batch])
    mean, std = acc.result()
    ref_mean, ref_std = metrics.inception_score_from_logits(logits, splits=5)
    assert mean == pytest.approx(ref_mean, rel=1e-10) and std == pytest.approx(ref_std, rel=1e-8)


def test_streaming_inception_score_refuses_wrong_counts():
    acc = metrics.StreamingInceptionScore(10, splits=2)
    acc.update(np.zeros((6, 4)))
    with pytest.raises(ValueError, match="6 examples seen, 10 declared"):
        acc.result()
    with pytest.raises(ValueError, match="more than the 10"):
        acc.update(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="3 classes, expected 4"):
        acc.update(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="3 examples for 10 splits"):
        metrics.StreamingInceptionScore(3, splits=10)


def _fid_reference(a, b):
    """Frechet distance with tr sqrt(S1 S2) from the eigenvalues of S1^1/2 S2 S1^1/2."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = scipy.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.clip(scipy.linalg.eigvalsh(root1 @ s2 @ root1), 0, None)
    return np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(ev))


def test_frechet_distance_hand_computed_1d():
    # (1 - 3)^2 + 4 + 1 - 2 sqrt(4 * 1) = 5.
    assert metrics.frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="shapes"):
        metrics.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_fid_matches_reference_and_identity():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(60, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(0.5, 2.0, size=(45, 6))
    assert metrics.fid_from_activations(a, b) == pytest.approx(_fid_reference(a, b), rel=1e-8)
    assert abs(metrics.fid_from_activations(a, a)) < 1e-6
    # Fewer samples than dimensions: singular covariances still give a finite, matching value.
    c = rng.normal(size=(5, 10))
    d = rng.normal(size=(6, 10)) + 1
    got = metrics.fid_from_activations(c, d)
    assert np.isfinite(got) and got == pytest.approx(_fid_reference(c, d), rel=1e-4)


def test_running_statistics_equal_batch_statistics():
    rng = np.random.default_rng(3)
    # A large common offset: the streaming update must not lose the covariance to cancellation.
    acts = rng.normal(size=(103, 5)) @ rng.normal(size=(5, 5)) + 1e4
    stats = metrics.RunningStatistics()
    for lo, hi in ((0, 1), (1, 40), (40, 40), (40, 77), (77, 103)):
        stats.update(acts[lo:hi])
    mu, sigma = stats.statistics()
    ref_mu, ref_sigma = metrics.activation_statistics(acts)
    assert stats.count == 103
    np.testing.assert_allclose(mu, acts.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(acts, rowvar=False), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ref_sigma, np.cov(acts, rowvar=False))
    half = acts.shape[0] // 2
    other = metrics.RunningStatistics(dim=5)
    other.update(acts[:half])
    assert metrics.frechet_distance(*other.statistics(), ref_mu, ref_sigma) >= -1e-6
    with pytest.raises(ValueError, match="dimension"):
        other.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        metrics.RunningStatistics().statistics()


# --------------------------------------------------------------------------- parsing


def test_parsing_confusion_miou_accuracy_hand_made():
    true = np.array([[[0, 1], [1, 2]]])
    pred = np.array([[[0, 1], [2, 2]]])
    conf = metrics.parsing_confusion(pred, true, 4)
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0] = expected[1, 1] = expected[1, 2] = expected[2, 2] = 1
    np.testing.assert_array_equal(conf, expected)
    # IoU: label 0 1/1, label 1 1/2, label 2 1/2, label 3 absent from both (ignored).
    np.testing.assert_allclose(metrics.iou_per_label(conf)[:3], [1.0, 0.5, 0.5])
    assert np.isnan(metrics.iou_per_label(conf)[3])
    assert metrics.miou_from_confusion(conf) == pytest.approx(2 / 3)
    assert metrics.pixel_accuracy_from_confusion(conf) == pytest.approx(3 / 4)
    # Confusions of a stream add up to the confusion of the whole.
    rng = np.random.default_rng(4)
    p, t = rng.integers(0, 10, size=(2, 3, 5, 4)), rng.integers(0, 10, size=(2, 3, 5, 4))
    whole = metrics.parsing_confusion(p, t, 10)
    parts = metrics.parsing_confusion(p[0], t[0], 10) + metrics.parsing_confusion(p[1], t[1], 10)
    np.testing.assert_array_equal(whole, parts)
    assert whole.sum() == p.size
    assert metrics.pixel_accuracy_from_confusion(whole) == pytest.approx((p == t).mean())


def test_parsing_confusion_rejects_bad_labels():
    with pytest.raises(ValueError, match="true_labels"):
        metrics.parsing_confusion(np.zeros((2, 2), int), np.full((2, 2), 10), 10)
    with pytest.raises(ValueError, match="pred_labels"):
        metrics.parsing_confusion(np.full((2, 2), -1), np.zeros((2, 2), int), 10)
    with pytest.raises(ValueError, match="shapes"):
        metrics.parsing_confusion(np.zeros((2, 2), int), np.zeros((2, 3), int), 10)
    with pytest.raises(ValueError, match="empty"):
        metrics.miou_from_confusion(np.zeros((3, 3)))


# --------------------------------------------------------------------------- PCKh


def test_pckh_hand_made():
    kp = geometry.KP
    true = np.full((2, 18, 2), -1.0)
    pred = np.full((2, 18, 2), -1.0)
    # Head box: y 8..30 (h 22), x 16..24 (w 8): tolerance |dy| < 11, |dx| < 4.
    true[0, kp["nose"]], pred[0, kp["nose"]] = (10, 20), (10, 20)  # right
    true[0, kp["neck"]], pred[0, kp["neck"]] = (30, 20), (30, 23.9)  # right
    true[0, kp["Leye"]], pred[0, kp["Leye"]] = (8, 24), (8, 28)  # |dx| = 4: wrong (strict)
    true[0, kp["Reye"]] = (8, 16)  # not predicted: wrong
    true[0, kp["Rsho"]], pred[0, kp["Rsho"]] = (40, 10), (50.9, 10)  # right
    true[0, kp["Rhip"]], pred[0, kp["Rhip"]] = (70, 12), (81, 12)  # |dy| = 11: wrong
    pred[0, kp["Lsho"]] = (40, 30)  # not in the truth: not counted
    true[1, kp["nose"]] = pred[1, kp["nose"]] = (5, 5)  # one head point: example left out
    correct, total = metrics.pckh_counts(pred, true)
    np.testing.assert_array_equal(correct, [3, 0])
    np.testing.assert_array_equal(total, [6, 0])
    assert metrics.pckh(pred, true) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="head size"):
        metrics.pckh(pred[1:], true[1:])


def _pose_transfer_pckh(pred, true, alpha=0.5):
    """Loop port of Pose-Transfer's calPCKH_fashion.py (x/y lists, head from PARTS_SEL)."""
    n_all = n_correct = 0
    for p, t in zip(pred, true):
        px, py, tx, ty = list(p[:, 1]), list(p[:, 0]), list(t[:, 1]), list(t[:, 0])
        head = [(tx[c], ty[c]) for c in (0, 1, 14, 15, 16, 17) if tx[c] != -1 and ty[c] != -1]
        if len(head) < 2:
            continue
        xs, ys = zip(*head)
        hz = (max(xs) - min(xs), max(ys) - min(ys))
        n_all += sum(v != -1 for v in ty)
        for a, b, c, d in zip(px, py, tx, ty):
            if -1 in (a, b, c, d):
                continue
            n_correct += abs(a - c) < hz[0] * alpha and abs(b - d) < hz[1] * alpha
    return n_correct / n_all


def test_pckh_matches_pose_transfer_loop():
    rng = np.random.default_rng(5)
    true = rng.integers(0, 64, size=(30, 18, 2)).astype(np.float64)
    pred = true + rng.integers(-12, 13, size=true.shape)
    true[rng.uniform(size=(30, 18)) < 0.3] = -1
    pred[rng.uniform(size=(30, 18)) < 0.1] = -1
    assert metrics.pckh(pred, true) == pytest.approx(_pose_transfer_pckh(pred, true))


# --------------------------------------------------------------------------- L1


def test_l1_distance():
    a = np.zeros((2, 2, 2, 3), np.uint8)
    b = np.zeros((2, 2, 2, 3), np.uint8)
    b[0] = 255
    b[1, 0, 0, 0] = 51  # 0.2 on 1 of 12 values
    np.testing.assert_allclose(metrics.l1_distance(a, b), [1.0, 0.2 / 12])
    fa = a.astype(np.float32) / 127.5 - 1
    fb = b.astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(metrics.l1_distance(fa, fb), [1.0, 0.2 / 12], rtol=1e-6)
    np.testing.assert_allclose(metrics.l1_distance(a * 1.0, b * 1.0, data_range=255), [1.0, 0.2 / 12])
    with pytest.raises(ValueError, match="data_range"):
        metrics.l1_distance(a * 1.0, b * 1.0)
    with pytest.raises(ValueError, match="dtypes"):
        metrics.l1_distance(a, fb)


def test_paint_parsing_hand_made():
    src = np.zeros((1, 2, 3, 3), np.uint8)
    src[0, 0, :] = [[10, 20, 30], [20, 40, 60], [0, 0, 0]]
    src[0, 1, :] = [[100, 100, 100], [200, 0, 50], [7, 7, 7]]
    sp = np.array([[[3, 3, 0], [4, 4, 0]]])
    # Target: label 4 top-left, 3 bottom-right, 0 elsewhere; label 2 (absent in the source) once.
    tp = np.array([[[4, 0, 2], [0, 3, 3]]])
    out = metrics.paint_parsing(src, sp, tp)
    assert out.dtype == np.uint8 and out.shape == src.shape
    np.testing.assert_array_equal(out[0, 0, 0], [150, 50, 75])  # mean of label 4
    np.testing.assert_array_equal(out[0, 1, 1], [15, 30, 45])  # mean of label 3
    np.testing.assert_array_equal(out[0, 1, 2], [15, 30, 45])
    np.testing.assert_array_equal(out[0, 0, 1], [4, 4, 4])  # background: mean of (0,0,0) and (7,7,7), half up
    # Label 2 is not in the source: the mean colour of the source's person (labels 3 and 4).
    np.testing.assert_array_equal(out[0, 0, 2], [83, 40, 60])
    # Painting a map with the source's own parsing keeps every label's mean colour.
    again = metrics.paint_parsing(src, sp, sp)
    for lab in (0, 3, 4):
        np.testing.assert_allclose(again[0][sp[0] == lab].mean(0), src[0][sp[0] == lab].mean(0), atol=0.5)


def test_paint_parsing_rejects_bad_input():
    src = np.zeros((1, 2, 2, 3), np.uint8)
    ok = np.zeros((1, 2, 2), np.int64)
    with pytest.raises(ValueError, match="uint8"):
        metrics.paint_parsing(src.astype(np.float32), ok, ok)
    with pytest.raises(ValueError, match="do not match"):
        metrics.paint_parsing(src, ok[:, :1], ok)
    with pytest.raises(ValueError, match="target_parsing has labels outside"):
        metrics.paint_parsing(src, ok, ok + 10)
