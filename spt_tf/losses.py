"""Every loss of SPT, as pure TensorFlow functions (TF-GAN ``losses_impl`` style).

Conventions shared by every function here:
  * Each loss returns **per-example** values, a float32 tensor ``[B]``. The
    training step reduces them with
    ``tf.nn.compute_average_loss(per_example, global_batch_size=...)`` so that
    replicas of a distribution strategy sum to the global mean.
  * Inputs are cast to float32 first, so a ``mixed_bfloat16`` /
    ``mixed_float16`` network still gets float32 losses.
  * "Mean" means the mean over every non-batch axis of one example. The paper
    writes ``||.||_2^2`` (a sum); the releases use ``MSELoss`` (a mean), and
    the loss weights of the paper, Sec. 4.1 (lambda_pose 700, lambda_cont 0.03)
    are tuned for the mean, so the mean is used throughout.

Paper equation -> function:
  * Eq. 2 (H_S cross entropy, body weighted double): :func:`weighted_cross_entropy`.
  * Eq. 3, 5 (adversarial): :func:`generator_loss`, :func:`discriminator_loss`
    (``"lsgan"`` or ``"vanilla"``) on PatchGAN outputs ``[B, h, w, 1]``.
  * Eq. 6 (pose): :func:`pose_loss`; the detector P itself: :func:`pose_detector_loss`.
  * The human parser (not in the paper; the ``parser`` stage): :func:`parser_loss`.
  * Eq. 7 (content): :func:`content_loss`.
  * Eq. 8 (semantic-aware style): :func:`semantic_style_loss` (with
    :func:`gram_matrix`); ablations: :func:`mask_style_loss` (Baseline),
    :func:`patch_style_loss` (Fig. 7).
  * Eq. 9 (face adversarial): :func:`face_generator_loss`,
    :func:`face_discriminator_loss` on crops of ``spt_tf.geometry.crop_faces``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from spt_tf import geometry

GAN_KINDS = ("lsgan", "vanilla")
# Release choice for Eq. 8 of the paper: 8 labels, background (0) and face (1) excluded.
DEFAULT_STYLE_LABELS = (2, 3, 4, 5, 6, 7, 8, 9)
# Probabilities are clipped to [EPSILON, 1] before the log of the cross entropy.
EPSILON = 1e-7


def _f32(x) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _mean_per_example(x: tf.Tensor) -> tf.Tensor:
    """[B, ...] -> [B]: mean over every non-batch axis (rank >= 1)."""
    x = _f32(x)
    if x.shape.rank is not None and x.shape.rank < 2:
        raise ValueError(f"losses: expected a batched tensor [B, ...] of rank >= 2, got shape {x.shape}")
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise ValueError(f"losses: unknown GAN loss kind {kind!r}; expected one of {GAN_KINDS}")


# --------------------------------------------------------------------------- GAN losses


def lsgan_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """LSGAN generator loss ``mean((D(G(z)) - 1)^2)``.

    Args:
      fake_logits: [B, h, w, 1] (or any [B, ...]) raw discriminator outputs on
        generated samples, unbounded.

    Returns:
      [B] float32, >= 0.
    """
    return _mean_per_example(tf.square(_f32(fake_logits) - 1.0))


def lsgan_discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """LSGAN discriminator loss, halved: ``0.5 * (mean((D(x) - 1)^2) + mean(D(G(z))^2))``.

    The halving is the pix2pix / SPT release convention: D learns at half the
    rate of G.

    Args:
      real_logits: [B, h, w, 1] discriminator outputs on real samples.
      fake_logits: [B, h', w', 1] on generated samples (same B).

    Returns:
      [B] float32, >= 0.
    """
    real = _mean_per_example(tf.square(_f32(real_logits) - 1.0))
    fake = _mean_per_example(tf.square(_f32(fake_logits)))
    return 0.5 * (real + fake)


def vanilla_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """Non-saturating GAN generator loss ``mean(-log sigmoid(D(G(z))))``.

    Binary cross entropy with target 1, computed from logits
    (``softplus(-x) = -log sigmoid(x)``) for stability.

    Args:
      fake_logits: [B, h, w, 1] logits on generated samples.

    Returns:
      [B] float32, >= 0.
    """
    return _mean_per_example(tf.nn.softplus(-_f32(fake_logits)))


def vanilla_discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """GAN discriminator loss (BCE from logits, reals 1, fakes 0), halved.

    ``0.5 * (mean(-log sigmoid(D(x))) + mean(-log(1 - sigmoid(D(G(z))))))``;
    halved like :func:`lsgan_discriminator_loss` so the two kinds are
    interchangeable under the same loss weights.

    Args:
      real_logits: [B, h, w, 1] logits on real samples.
      fake_logits: [B, h', w', 1] logits on generated samples.

    Returns:
      [B] float32, >= 0.
    """
    real = _mean_per_example(tf.nn.softplus(-_f32(real_logits)))
    fake = _mean_per_example(tf.nn.softplus(_f32(fake_logits)))
    return 0.5 * (real + fake)


def generator_loss(kind: str, fake_logits: tf.Tensor) -> tf.Tensor:
    """Dispatch to ``<kind>_generator_loss``; kind in :data:`GAN_KINDS`. Returns [B]."""
    _check_kind(kind)
    if kind == "lsgan":
        return lsgan_generator_loss(fake_logits)
    return vanilla_generator_loss(fake_logits)


def discriminator_loss(kind: str, real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Dispatch to ``<kind>_discriminator_loss``; kind in :data:`GAN_KINDS`. Returns [B]."""
    _check_kind(kind)
    if kind == "lsgan":
        return lsgan_discriminator_loss(real_logits, fake_logits)
    return vanilla_discriminator_loss(real_logits, fake_logits)


def _valid_weight(valid: tf.Tensor) -> tf.Tensor:
    v = _f32(valid)
    if v.shape.rank is not None and v.shape.rank != 1:
        raise ValueError(f"losses: `valid` must be [B], got shape {v.shape}")
    return v


def masked_generator_loss(kind: str, fake_logits: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Generator loss that is exactly 0 for examples with ``valid`` False.

    Used for the face loss: an example whose face box is invalid (no head
    keypoint, unknown body scale; ``spt_tf.geometry.face_boxes``) gets an
    all-zero crop that carries no signal. Invalid examples still count in the
    global batch size of ``compute_average_loss`` (they dilute the mean rather
    than re-weight the batch, so the loss scale does not jump with the number
    of visible faces).

    Args:
      kind: "lsgan" or "vanilla".
      fake_logits: [B, h, w, 1] logits on generated crops.
      valid: [B] bool (or {0, 1}).

    Returns:
      [B] float32.
    """
    return generator_loss(kind, fake_logits) * _valid_weight(valid)


def masked_discriminator_loss(
    kind: str,
    real_logits: tf.Tensor,
    fake_logits: tf.Tensor,
    real_valid: tf.Tensor,
    fake_valid: tf.Tensor,
) -> tf.Tensor:
    """Halved discriminator loss whose real / fake terms are zeroed where invalid.

    Real and fake crops come from different poses (source vs target), so each
    side has its own validity.

    Args:
      kind: "lsgan" or "vanilla".
      real_logits, fake_logits: [B, h, w, 1] logits.
      real_valid, fake_valid: [B] bool (or {0, 1}).

    Returns:
      [B] float32.
    """
    _check_kind(kind)
    if kind == "lsgan":
        real = _mean_per_example(tf.square(_f32(real_logits) - 1.0))
        fake = _mean_per_example(tf.square(_f32(fake_logits)))
    else:
        real = _mean_per_example(tf.nn.softplus(-_f32(real_logits)))
        fake = _mean_per_example(tf.nn.softplus(_f32(fake_logits)))
    rv = _valid_weight(real_valid)
    fv = _valid_weight(fake_valid)
    return 0.5 * (real * rv + fake * fv)


def face_generator_loss(kind: str, fake_logits: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Eq. 9, generator side: GAN loss of ``D_face`` on generated face crops.

    The crops come from ``spt_tf.geometry.crop_faces(image, keypoints, size)``
    of the pose the image is in; ``valid`` is the third output of
    ``spt_tf.geometry.face_boxes`` for those keypoints. See
    :func:`masked_generator_loss`. Returns [B] float32.
    """
    return masked_generator_loss(kind, fake_logits, valid)


def face_discriminator_loss(
    kind: str,
    real_logits: tf.Tensor,
    fake_logits: tf.Tensor,
    real_valid: tf.Tensor,
    fake_valid: tf.Tensor,
) -> tf.Tensor:
    """Eq. 9, discriminator side; see :func:`masked_discriminator_loss`. Returns [B]."""
    return masked_discriminator_loss(kind, real_logits, fake_logits, real_valid, fake_valid)


# --------------------------------------------------------------------------- H_S


def weighted_cross_entropy(
    target: tf.Tensor, probs: tf.Tensor, body_mask: tf.Tensor, epsilon: float = EPSILON
) -> tf.Tensor:
    """Eq. 2: ``-|| S* ⊙ log S̃ ⊙ (1 + M) ||_1``, normalised per pixel.

    The pixel-wise cross entropy ``-sum_l S*_l log S̃_l`` is weighted by
    ``1 + M`` (body pixels of the pose mask weigh double) and averaged over
    the H x W pixels of each example (the paper's L1 norm is a sum; the mean
    keeps ``lambda_ce`` independent of the resolution).

    Args:
      target: [B, H, W, L] one-hot (or soft) target parsing ``S*``, in [0, 1].
      probs: [B, H, W, L] predicted probabilities ``S̃`` (softmax output), in
        [0, 1]; clipped to [epsilon, 1] before the log.
      body_mask: [B, H, W, 1] pose mask ``M`` in {0, 1}.
      epsilon: lower clip of the probabilities.

    Returns:
      [B] float32, >= 0.
    """
    target, probs, body_mask = _f32(target), _f32(probs), _f32(body_mask)
    pixel_ce = -tf.reduce_sum(target * tf.math.log(tf.clip_by_value(probs, epsilon, 1.0)), axis=-1)
    return _mean_per_example(pixel_ce * (1.0 + body_mask[..., 0]))


# --------------------------------------------------------------------------- H_A regressions


def pose_loss(pred_heatmaps: tf.Tensor, target_heatmaps: tf.Tensor) -> tf.Tensor:
    """Eq. 6 (one term): ``mean((P(Ĩ) - p)^2)`` per example.

    Args:
      pred_heatmaps: [B, H, W, 18] output of the frozen pose detector P.
      target_heatmaps: [B, H, W, 18] Gaussian pose maps in [0, 1].

    Returns:
      [B] float32.
    """
    return _mean_per_example(tf.square(_f32(pred_heatmaps) - _f32(target_heatmaps)))


def pose_detector_loss(pred: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """Training loss of the pose detector P: heatmap MSE per example, [B].

    Args:
      pred: [B, H, W, 18] predicted heatmaps.
      target: [B, H, W, 18] Gaussian pose maps in [0, 1] (``geometry.pose_heatmaps``).
    """
    return _mean_per_example(tf.square(_f32(pred) - _f32(target)))


def parser_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Training loss of the human parser: per-pixel cross entropy, mean over H x W, [B].

    Computed from the logits (a stable log-softmax), not from clipped
    probabilities as :func:`weighted_cross_entropy` must (H_S outputs a softmax);
    every pixel weighs the same (a parser must also get the background right).

    Args:
      labels: [B, H, W] integer label map, values in [0, L).
      logits: [B, H, W, L] the parser's logits.

    Returns:
      [B] float32, >= 0.
    """
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=_f32(logits))
    return _mean_per_example(ce)


def content_loss(features_a: tf.Tensor, features_b: tf.Tensor) -> tf.Tensor:
    """Eq. 7: ``mean((Λ(Ĩ_ps) - Λ(I_ps))^2)`` per example.

    Args:
      features_a, features_b: [B, h, w, C] VGG16 relu2_1 features (>= 0).

    Returns:
      [B] float32.
    """
    return _mean_per_example(tf.square(_f32(features_a) - _f32(features_b)))


def l1_loss(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``mean(|a - b|)`` per example; a, b: [B, ...] same shape. Returns [B]."""
    return _mean_per_example(tf.abs(_f32(a) - _f32(b)))


# --------------------------------------------------------------------------- style losses


def gram_matrix(features: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """Gram matrix ``F^T F / (h * w)`` of (optionally masked) features.

    Normalisation (SPT release): divided by the number of feature pixels
    ``h * w``, not by the mask area, so a small part gives a small Gram matrix;
    not divided by C.

    Args:
      features: [B, h, w, C].
      mask: optional [B, h, w, 1] or [B, h, w] weights in [0, 1] (e.g. a
        downsampled label map); the features are multiplied by it first.

    Returns:
      [B, C, C] float32, symmetric.
    """
    f = _f32(features)
    if mask is not None:
        m = _f32(mask)
        if m.shape.rank == 3:
            m = m[..., None]
        f = f * m
    shape = tf.shape(f)
    flat = tf.reshape(f, [shape[0], shape[1] * shape[2], shape[3]])
    return tf.linalg.matmul(flat, flat, transpose_a=True) / tf.cast(shape[1] * shape[2], tf.float32)


def _area_matrix(out_size: int, in_size: int) -> np.ndarray:
    """[out, in] weights of area (box) resampling: overlap of each output cell."""
    scale = in_size / out_size
    m = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), in_size)):
            m[i, j] = max(0.0, min(hi, j + 1) - max(lo, j)) / scale
    return m.astype(np.float32)


def area_resize(maps: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Area (box-average) resampling, differentiable and XLA-safe.

    Equals ``tf.image.resize(..., method="area")`` (which has no gradient) for
    downsampling; written as two small matrix products so gradients reach a
    predicted parsing map in end-to-end training.

    Args:
      maps: [B, H, W, K] with static H, W.
      height, width: output size.

    Returns:
      [B, height, width, K] float32.
    """
    x = _f32(maps)
    h_in, w_in = x.shape[1], x.shape[2]
    if h_in is None or w_in is None:
        raise ValueError(f"losses.area_resize: needs static spatial sizes, got shape {x.shape}")
    if (h_in, w_in) == (height, width):
        return x
    ay = tf.constant(_area_matrix(height, h_in))
    ax = tf.constant(_area_matrix(width, w_in))
    return tf.einsum("ih,bhwk,jw->bijk", ay, x, ax)


def _static_hw(features: tf.Tensor, name: str) -> tuple[int, int]:
    h, w = features.shape[1], features.shape[2]
    if h is None or w is None:
        raise ValueError(f"losses.{name}: features need static spatial sizes, got shape {features.shape}")
    return int(h), int(w)


def _masked_gram_loss(feat_a, masks_a, present_a, feat_b, masks_b, present_b) -> tf.Tensor:
    """Sum over K regions of mean((G(F_a ⊙ m_a,k) - G(F_b ⊙ m_b,k))^2), where present in both.

    feat_*: [B, h, w, C]; masks_*: [B, h, w, K] at feature size; present_*: [B, K] bool.
    """
    total = tf.zeros(tf.shape(feat_a)[:1], tf.float32)
    both = tf.cast(present_a & present_b, tf.float32)
    for k in range(masks_a.shape[-1]):
        ga = gram_matrix(feat_a, masks_a[..., k : k + 1])
        gb = gram_matrix(feat_b, masks_b[..., k : k + 1])
        total += tf.reduce_mean(tf.square(ga - gb), axis=[1, 2]) * both[:, k]
    return total


def _label_masks(parsing: tf.Tensor, labels: Sequence[int], height: int, width: int):
    """Area-downsampled label channels [B, h, w, K] and presence [B, K] (argmax at full size)."""
    p = _f32(parsing)
    num = p.shape[-1]
    for lab in labels:
        if not 0 <= lab < num:
            raise ValueError(f"losses.semantic_style_loss: label {lab} outside the {num} parsing channels")
    idx = list(labels)
    chosen = tf.gather(p, idx, axis=-1)
    # Presence on the hard map: for a softmax prediction every label has a
    # nonzero area, so "nonzero area" would count every label; the argmax
    # equals the one-hot map when the input is one-hot.
    hard = tf.one_hot(tf.argmax(p, axis=-1), num, dtype=tf.float32)
    present = tf.reduce_any(tf.gather(hard, idx, axis=-1) > 0.0, axis=[1, 2])
    return area_resize(chosen, height, width), present


def semantic_style_loss(
    feat_a: tf.Tensor,
    parsing_a: tf.Tensor,
    feat_b: tf.Tensor,
    parsing_b: tf.Tensor,
    labels: Sequence[int] = DEFAULT_STYLE_LABELS,
) -> tf.Tensor:
    """Eq. 8 (one term ``L_sty(I1, I2, S1, S2)``): semantic-aware style loss.

    ``sum_l mean((G(Λ(I1) ⊙ Ψ_l(S1)) - G(Λ(I2) ⊙ Ψ_l(S2)))^2)`` over the
    chosen labels l, where ``Ψ_l(S)`` is label channel l area-downsampled to
    the feature size and G is :func:`gram_matrix` (divided by h * w). A label
    counts only where it is present in both maps (some pixel has it as its
    argmax): a garment missing from one image says nothing about style.

    Args:
      feat_a, feat_b: [B, h, w, C] VGG relu2_1 features of I1 and I2 (static h, w).
      parsing_a, parsing_b: [B, H, W, L] one-hot or softmax parsing of I1, I2 in
        [0, 1], at image resolution (static H, W).
      labels: label indices whose Gram matrices count (release: 2..9).

    Returns:
      [B] float32, >= 0; 0 for identical inputs; symmetric in (a, b).
    """
    h, w = _static_hw(feat_a, "semantic_style_loss")
    ma, pa = _label_masks(parsing_a, labels, h, w)
    mb, pb = _label_masks(parsing_b, labels, h, w)
    return _masked_gram_loss(feat_a, ma, pa, feat_b, mb, pb)


def mask_style_loss(feat_a: tf.Tensor, masks_a: tf.Tensor, feat_b: tf.Tensor, masks_b: tf.Tensor) -> tf.Tensor:
    """Baseline ablation: Eq. 8 with body-part masks instead of semantic labels.

    Args:
      feat_a, feat_b: [B, h, w, C] features (static h, w).
      masks_a, masks_b: [B, K, H, W] part masks in [0, 1] of each image's pose
        (``spt_tf.geometry.part_masks``, K = 10), area-downsampled here to the
        feature size. A part counts where its mask is nonzero in both.

    Returns:
      [B] float32, >= 0.
    """
    h, w = _static_hw(feat_a, "mask_style_loss")
    out = []
    for masks in (masks_a, masks_b):
        m = tf.transpose(_f32(masks), [0, 2, 3, 1])  # [B, H, W, K]
        present = tf.reduce_any(m > 0.0, axis=[1, 2])
        out.append((area_resize(m, h, w), present))
    (ma, pa), (mb, pb) = out
    return _masked_gram_loss(feat_a, ma, pa, feat_b, mb, pb)


def _patches(features: tf.Tensor, keypoints: tf.Tensor, scale_yx, size: int) -> tf.Tensor:
    """Bilinear size x size feature patches centred on each joint: [B, 18, size*size, C]."""
    kp = _f32(keypoints)
    offsets = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    cy = kp[..., 0] * scale_yx[0]
    cx = kp[..., 1] * scale_yx[1]
    sy = cy[:, :, None, None] + offsets[None, None, :, None] + tf.zeros([size, size])
    sx = cx[:, :, None, None] + offsets[None, None, None, :] + tf.zeros([size, size])
    p = geometry.sample_bilinear(_f32(features), sy, sx)  # [B, 18, size, size, C]
    shape = tf.shape(p)
    return tf.reshape(p, [shape[0], shape[1], size * size, shape[4]])


def patch_style_loss(
    feat_a: tf.Tensor,
    kp_a: tf.Tensor,
    feat_b: tf.Tensor,
    kp_b: tf.Tensor,
    image_size: tuple[int, int],
    half_size: float,
) -> tf.Tensor:
    """Fig. 7 ablation: patch-style loss of UPIS (Pumarola et al. 2018).

    For every joint visible in both poses, a square feature patch of side
    ``2 * half_size`` image pixels around it is sampled (bilinear, zeros
    outside the map; ``max(1, round(2 * half_size * h / H))`` feature pixels a
    side); the loss is the sum over those joints of the mean squared
    difference of the patches' Gram matrices (divided by the patch area).

    Args:
      feat_a, feat_b: [B, h, w, C] features (static h, w).
      kp_a, kp_b: [B, 18, 2] (y, x) keypoints in image pixels, -1 missing.
      image_size: (H, W) of the image the keypoints refer to.
      half_size: half side of the patch, image pixels (> 0).

    Returns:
      [B] float32, >= 0.
    """
    if half_size <= 0:
        raise ValueError(f"losses.patch_style_loss: half_size must be > 0, got {half_size}")
    h, w = _static_hw(feat_a, "patch_style_loss")
    ih, iw = image_size
    scale = (h / float(ih), w / float(iw))
    size = max(1, int(round(2.0 * half_size * h / float(ih))))
    pa = _patches(feat_a, kp_a, scale, size)
    pb = _patches(feat_b, kp_b, scale, size)
    ga = tf.einsum("bjpc,bjpd->bjcd", pa, pa) / float(size * size)
    gb = tf.einsum("bjpc,bjpd->bjcd", pb, pb) / float(size * size)
    per_joint = tf.reduce_mean(tf.square(ga - gb), axis=[2, 3])  # [B, 18]
    both = tf.cast(geometry.present(_f32(kp_a)) & geometry.present(_f32(kp_b)), tf.float32)
    return tf.reduce_sum(per_joint * both, axis=1)


# --------------------------------------------------------------------------- offline statistics

# Central-difference distances (pixels) of the image statistics features.
DEFAULT_DILATIONS = (1, 2, 4)
# A region counts in the statistics style loss only with at least this many pixels
# (a few pixels give statistics that are mostly their boundary).
MIN_REGION_PIXELS = 4.0


def _shift(x: tf.Tensor, dy: int, dx: int) -> tf.Tensor:
    """``out[y, x] = x[y + dy, x + dx]`` with zeros outside; x: [B, H, W, C] (static H, W)."""
    h, w = x.shape[1], x.shape[2]
    pad_y, pad_x = abs(dy), abs(dx)
    p = tf.pad(x, [[0, 0], [pad_y, pad_y], [pad_x, pad_x], [0, 0]])
    return p[:, pad_y + dy : pad_y + dy + h, pad_x + dx : pad_x + dx + w, :]


def image_statistics_features(images: tf.Tensor, dilations: Sequence[int] = DEFAULT_DILATIONS) -> tf.Tensor:
    """Fixed colour and multi-scale gradient features: the offline stand-in for VGG's Λ.

    Per pixel: the three colours, then for each distance d the forward differences
    ``x[p + d] - x[p]`` along x and along y of each colour (zeros are sampled
    outside the image). Colours carry the garment's colour, the differences at
    several distances its texture (stripes, checks, dots: their orientation and
    period). Forward, not central, differences: a central difference is blind to
    the highest frequency (a pattern of period 2 pixels, the checkerboard a
    transposed convolution leaves), which the loss must see to forbid it. No
    weights: nothing to train, download or checkpoint.

    Args:
      images: [B, H, W, 3] in [-1, 1] (static H, W).
      dilations: distances of the differences, pixels.

    Returns:
      [B, H, W, 3 + 6 * len(dilations)] float32.
    """
    x = _f32(images)
    feats = [x]
    for d in dilations:
        feats.append(_shift(x, 0, d) - x)
        feats.append(_shift(x, d, 0) - x)
    return tf.concat(feats, -1)


def _weighted_outer(weights: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``sum_p w[p, k] a[p, i] b[p, j]``: [B, P, K], [B, P, I], [B, P, J] -> [B, K, I, J] (one matmul)."""
    i, j = a.shape[-1], b.shape[-1]
    outer = tf.reshape(a[..., :, None] * b[..., None, :], [tf.shape(a)[0], -1, i * j])
    out = tf.linalg.matmul(weights, outer, transpose_a=True)
    return tf.reshape(out, [tf.shape(a)[0], weights.shape[-1], i, j])


def region_statistics(
    images: tf.Tensor, masks: tf.Tensor, dilations: Sequence[int] = DEFAULT_DILATIONS
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Colour and texture statistics of each region: the offline Gram matrices of Eq. 8.

    Per region k (mask m_k, hard {0, 1}), normalised by the region's area
    ``A_k = sum_p m_k`` so that regions of different size in two poses compare
    their appearance, not their size:

    * colour: ``sum_p m_k c cᵀ / A_k`` with ``c = [1, r, g, b]``: the mean colour
      (first row) and the colours' second moments;
    * texture, for each distance d: the second moments of the forward differences
      ``[D_x^d x, D_y^d x]`` (6 channels, :func:`image_statistics_features`), each
      product counted only where every sample it uses lies inside the region: a
      difference across the region's boundary measures the neighbour (often the
      background, which differs between two photos of a person), not the garment.
      The energy along x against y gives the texture's orientation, the distances
      its period (stripes, checks, dots); the x-y products its diagonal.

    These are blocks of the Gram matrix of Eq. 8 on the features
    ``[1, rgb, D^d x]``, without the products of differences at two distances
    (the block diagonal keeps the cost linear in the number of distances).

    Args:
      images: [B, H, W, 3] in [-1, 1] (static H, W).
      masks: [B, H, W, K] region masks in {0, 1} at image resolution.
      dilations: difference distances, pixels.

    Returns:
      ``(colour [B, K, 4, 4], texture [B, K, len(dilations), 6, 6], area [B, K])``, float32.
    """
    x = _f32(images)
    m = _f32(masks)
    b = tf.shape(x)[0]
    h, w = x.shape[1], x.shape[2]
    k = m.shape[-1]
    p = h * w
    flat = lambda t: tf.reshape(t, [b, p, t.shape[-1]])  # noqa: E731
    mf = flat(m)
    area = tf.reduce_sum(mf, axis=1)  # [B, K]
    norm = tf.maximum(area, 1.0)[:, :, None, None]
    c = flat(tf.concat([tf.ones_like(x[..., :1]), x], -1))
    colour = _weighted_outer(mf, c, c) / norm
    texture = []
    for d in dilations:
        gx, gy = flat(_shift(x, 0, d) - x), flat(_shift(x, d, 0) - x)
        vx, vy = flat(_shift(m, 0, d) * m), flat(_shift(m, d, 0) * m)
        xx = _weighted_outer(vx, gx, gx)
        yy = _weighted_outer(vy, gy, gy)
        xy = _weighted_outer(vx * vy, gx, gy)
        top = tf.concat([xx, xy], -1)
        bottom = tf.concat([tf.linalg.matrix_transpose(xy), yy], -1)
        texture.append(tf.concat([top, bottom], -2) / norm)
    if not texture:  # colour statistics alone
        return colour, tf.zeros([b, k, 0, 6, 6], tf.float32), area
    return colour, tf.stack(texture, 2), area


def statistics_style_loss(
    image_a: tf.Tensor,
    masks_a: tf.Tensor,
    image_b: tf.Tensor,
    masks_b: tf.Tensor,
    dilations: Sequence[int] = DEFAULT_DILATIONS,
    min_pixels: float = MIN_REGION_PIXELS,
) -> tf.Tensor:
    """Eq. 8 on fixed colour / texture statistics (:func:`region_statistics`).

    Per region present (at least ``min_pixels`` pixels) in both images: the mean
    squared difference of the colour block plus, for each distance, that of the
    texture block, so that colour and the texture at each scale weigh alike;
    summed over the regions. With the label masks of two parsing maps this is
    the semantic-aware style loss; with body-part masks the Baseline's
    mask-style loss.

    Args:
      image_a, image_b: [B, H, W, 3] in [-1, 1].
      masks_a, masks_b: [B, H, W, K] hard region masks of each image.
      dilations: difference distances, pixels.
      min_pixels: smallest area of a region that counts.

    Returns:
      [B] float32, >= 0; 0 for identical inputs; symmetric.
    """
    ca, ta, area_a = region_statistics(image_a, masks_a, dilations)
    cb, tb, area_b = region_statistics(image_b, masks_b, dilations)
    both = tf.cast((area_a >= min_pixels) & (area_b >= min_pixels), tf.float32)
    per_region = tf.reduce_mean(tf.square(ca - cb), axis=[2, 3]) + tf.reduce_sum(
        tf.reduce_mean(tf.square(ta - tb), axis=[3, 4]), axis=2
    )
    return tf.reduce_sum(per_region * both, axis=1)


def label_masks(parsing: tf.Tensor, labels: Sequence[int]) -> tf.Tensor:
    """[B, H, W, L] one-hot / probabilities -> [B, H, W, K] hard masks of ``labels`` (argmax)."""
    p = _f32(parsing)
    num = p.shape[-1]
    for lab in labels:
        if not 0 <= lab < num:
            raise ValueError(f"losses.label_masks: label {lab} outside the {num} parsing channels")
    hard = tf.one_hot(tf.argmax(p, axis=-1), num, dtype=tf.float32)
    return tf.gather(hard, list(labels), axis=-1)
