"""Metric statistics, apart from the feature networks (TF-GAN ``classifier_metrics`` style).

Everything here takes images, label maps, keypoints, logits or activations and
returns numbers; Inception, the pose detector and H_S run elsewhere. That keeps
the maths testable without pretrained weights (tests compare against
scikit-image, scipy and hand-made cases).

Field conventions (Table 1 of the paper; docs/evaluation.md):
  * SSIM: Gaussian weights sigma 1.5 (11 taps, truncate 3.5), population
    covariance, K1 = 0.01, K2 = 0.03, per channel then averaged, the 5-pixel
    border (filter radius) excluded from the mean, data range = max - min of
    the *generated* image (PG2 / Deformable GAN ``compare_ssim(real, gen, ...,
    data_range=gen.max() - gen.min())``), on uint8 images.
  * mask-SSIM / mask-IS: both images multiplied by the PG2 pose mask of the
    target keypoints (radius 4, closing 5): :func:`evaluation_masks`.
  * IS: softmax of the Inception logits, 10 splits, ``exp(E KL(p(y|x) || p(y)))``
    per split, mean and standard deviation (OpenAI ``inception_score.py``).
  * FID: Frechet distance of Gaussians fitted to the 2048-d pool features.
  * PCKh: Pose-Transfer / PATN ``calPCKH`` rule (:func:`pckh_counts`).

Numpy functions work in float64.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.special
import tensorflow as tf

from spt_tf import geometry

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Filter radius int(3.5 * 1.5 + 0.5) = 5: 11 taps, and the border skimage crops.
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
# PCKh head keypoints (Pose-Transfer PARTS_SEL): nose, neck, eyes, ears.
PCKH_HEAD = tuple(geometry.KP[n] for n in ("nose", "neck", "Leye", "Reye", "Lear", "Rear"))


# --------------------------------------------------------------------------- SSIM


def gaussian_kernel_1d(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> np.ndarray:
    """The 1-D Gaussian of ``scipy.ndimage.gaussian_filter``: [2r + 1] float64, sums to 1."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _check_pair(shape_a, shape_b, what: str) -> None:
    """Same shapes, and H, W (axes -3, -2) at least the Gaussian window where known."""
    if tuple(shape_a) != tuple(shape_b):
        raise ValueError(f"metrics.{what}: image shapes differ: {tuple(shape_a)} vs {tuple(shape_b)}")
    h, w = shape_a[-3], shape_a[-2]
    side = 2 * SSIM_RADIUS + 1
    if (h is not None and h < side) or (w is not None and w < side):
        raise ValueError(
            f"metrics.{what}: images must be at least {side} pixels a side (the Gaussian window), got {h}x{w}"
        )


def ssim(img_a, img_b, data_range: float | None = None) -> float:
    """SSIM of one image pair with the field's settings (numpy / scipy, float64).

    Equals ``skimage.metrics.structural_similarity(img_a, img_b, channel_axis=-1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range)``.

    Args:
      img_a: [H, W, C] real image (uint8 in [0, 255] or float), H, W >= 11.
      img_b: [H, W, C] generated image, same shape.
      data_range: dynamic range for the constants C1 = (0.01 R)^2 and
        C2 = (0.03 R)^2; default ``img_b.max() - img_b.min()`` (field
        convention). With R = 0 (constant generated image) the constants
        vanish, exactly as in scikit-image: the result is 0 where the real
        image varies and NaN where both are flat.

    Returns:
      Mean SSIM over channels and pixels (border of 5 excluded), in [-1, 1].
    """
    a = np.asarray(img_a)
    b = np.asarray(img_b)
    if a.ndim != 3:
        raise ValueError(f"metrics.ssim: expected [H, W, C] images, got shape {a.shape}")
    _check_pair(a.shape, b.shape, "ssim")
    r = float(b.max()) - float(b.min()) if data_range is None else float(data_range)
    c1, c2 = (SSIM_K1 * r) ** 2, (SSIM_K2 * r) ** 2
    a = a.astype(np.float64)
    b = b.astype(np.float64)

    def filt(x):
        return scipy.ndimage.gaussian_filter(x, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    values = []
    p = SSIM_RADIUS
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        ux, uy = filt(x), filt(y)
        vx = filt(x * x) - ux * ux
        vy = filt(y * y) - uy * uy
        vxy = filt(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        values.append(s[p:-p, p:-p].mean())
    return float(np.mean(values))


def ssim_batch(images_a, images_b, data_range=None, dtype=tf.float32) -> tf.Tensor:
    """Batched SSIM in TensorFlow (same definition as :func:`ssim`), for the evaluator.

    Works eagerly, in ``tf.function`` and under XLA. Only the pixels at least
    5 from the border enter the mean, and they see no padding, so the border
    mode of scikit-image's filter does not matter. Second moments are formed on
    images centred by their own per-channel mean and scaled by the data range,
    so float32 stays within 1e-4 of the float64 reference.

    Speed (2 shared CPU cores, 256 x 256 x 3, batch 32): about 0.1 s an image
    in graph mode, like the scipy version; XLA on CPU is ~10x slower (its
    depthwise convolution), so compile it only on an accelerator.

    Args:
      images_a: [B, H, W, C] real images (uint8 in [0, 255] or float), H, W >= 11.
      images_b: [B, H, W, C] generated images, same shape.
      data_range: None (per example ``max - min`` of ``images_b``), a scalar,
        or [B].
      dtype: computation dtype (tf.float32 or tf.float64).

    Returns:
      [B] SSIM in [-1, 1] (``dtype``); NaN for a flat generated image equal in
      mean to a flat real one (0 / 0, as in scikit-image).
    """
    a = tf.cast(tf.convert_to_tensor(images_a), dtype)
    b = tf.cast(tf.convert_to_tensor(images_b), dtype)
    if a.shape.rank != 4:
        raise ValueError(f"metrics.ssim_batch: expected [B, H, W, C] images, got shape {a.shape}")
    _check_pair(a.shape.as_list(), b.shape.as_list(), "ssim_batch")
    if data_range is None:
        r = tf.reduce_max(b, axis=[1, 2, 3]) - tf.reduce_min(b, axis=[1, 2, 3])
    else:
        r = tf.broadcast_to(tf.cast(data_range, dtype), tf.shape(a)[:1])
    ok = r > 0
    # R = 0: no scaling and C1 = C2 = 0, the scikit-image arithmetic.
    inv = tf.where(ok, 1.0 / tf.where(ok, r, tf.ones_like(r)), tf.ones_like(r))[:, None, None, None]
    unit = tf.cast(ok, dtype)[:, None, None, None]
    c1 = (SSIM_K1 * unit) ** 2
    c2 = (SSIM_K2 * unit) ** 2
    a = a * inv
    b = b * inv
    mean_a = tf.reduce_mean(a, axis=[1, 2], keepdims=True)
    mean_b = tf.reduce_mean(b, axis=[1, 2], keepdims=True)
    xa = a - mean_a
    xb = b - mean_b
    c = tf.shape(a)[3]
    stack = tf.concat([xa, xb, xa * xa, xb * xb, xa * xb], axis=3)  # [B, H, W, 5C]
    k = tf.constant(gaussian_kernel_1d(), dtype)
    ky = tf.tile(k[:, None, None, None], [1, 1, 5 * c, 1])
    kx = tf.tile(k[None, :, None, None], [1, 1, 5 * c, 1])
    f = tf.nn.depthwise_conv2d(stack, ky, [1, 1, 1, 1], "VALID")
    f = tf.nn.depthwise_conv2d(f, kx, [1, 1, 1, 1], "VALID")
    fa, fb, faa, fbb, fab = tf.split(f, 5, axis=3)
    ux = fa + mean_a
    uy = fb + mean_b
    vx = faa - fa * fa
    vy = fbb - fb * fb
    vxy = fab - fa * fb
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return tf.reduce_mean(s, axis=[1, 2, 3])


def apply_mask(images, masks):
    """Images multiplied by a {0, 1} mask (mask-SSIM / mask-IS inputs).

    Args:
      images: [B, H, W, C] or [H, W, C], numpy (uint8 or float; dtype kept) or
        a tf.Tensor.
      masks: [B, H, W, 1] or [H, W, 1] in {0, 1} (e.g. :func:`evaluation_masks`).

    Returns:
      Same type, shape and dtype as ``images``; pixels outside the mask are 0.
    """
    if isinstance(images, tf.Tensor) or isinstance(masks, tf.Tensor):
        images = tf.convert_to_tensor(images)
        return images * tf.cast(masks, images.dtype)
    images = np.asarray(images)
    masks = np.asarray(masks)
    if masks.shape[-1] != 1 or masks.shape[:-1] != images.shape[:-1]:
        raise ValueError(f"metrics.apply_mask: mask shape {masks.shape} does not fit images {images.shape}")
    return (images * (masks != 0)).astype(images.dtype)


def evaluation_masks(
    keypoints, height: int, width: int, image_size=None, radius: float = 4.0, closing: int = 5
) -> np.ndarray:
    """The field's mask for mask-SSIM / mask-IS: PG2 pose mask of the target keypoints.

    Limb rectangles and joint discs of radius 4 image pixels, then a
    dilation and an erosion by a 5 x 5 square (``spt_tf.geometry.pose_masks``).

    Args:
      keypoints: [B, 18, 2] target keypoints (y, x) in image pixels, -1 missing.
      height, width: mask size.
      image_size: (H, W) the keypoints refer to; default (height, width).

    Returns:
      [B, height, width, 1] float32 numpy in {0, 1}.
    """
    m = geometry.pose_masks(tf.convert_to_tensor(keypoints, tf.float32), height, width, radius, closing, image_size)
    return m.numpy()


def mask_ssim(img_a, img_b, mask, data_range: float | None = None) -> float:
    """SSIM of the masked pair (mask-SSIM); data range from the masked generated image.

    Args:
      img_a, img_b: [H, W, C] real and generated images; mask: [H, W, 1] in {0, 1}.
    """
    return ssim(apply_mask(img_a, mask), apply_mask(img_b, mask), data_range)


def mask_ssim_batch(images_a, images_b, masks, data_range=None, dtype=tf.float32) -> tf.Tensor:
    """Batched mask-SSIM: :func:`ssim_batch` of both images times ``masks`` [B, H, W, 1]."""
    a = tf.convert_to_tensor(images_a)
    b = tf.convert_to_tensor(images_b)
    return ssim_batch(
        apply_mask(a, tf.convert_to_tensor(masks)),
        apply_mask(b, tf.convert_to_tensor(masks)),
        data_range,
        dtype,
    )


# --------------------------------------------------------------------------- IS and FID


def inception_score_from_logits(logits, splits: int = 10) -> tuple[float, float]:
    """Inception score from classifier logits (OpenAI ``inception_score.py`` splits).

    The N examples are cut into ``splits`` consecutive parts
    ``[i N // splits, (i + 1) N // splits)``; each part scores
    ``exp(mean_x KL(p(y|x) || p(y)))`` with p(y) the part's mean prediction.

    Args:
      logits: [N, K] unnormalised logits (softmax taken here, in float64),
        N >= splits.
      splits: number of parts.

    Returns:
      (mean, std) over the parts; each score is in [1, K].
    """
    x = np.asarray(logits, np.float64)
    if x.ndim != 2:
        raise ValueError(f"metrics.inception_score_from_logits: expected [N, K] logits, got {x.shape}")
    n = x.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"metrics.inception_score_from_logits: {n} examples for {splits} splits")
    log_p = x - scipy.special.logsumexp(x, axis=1, keepdims=True)
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        part, log_part = p[lo:hi], log_p[lo:hi]
        with np.errstate(divide="ignore"):
            log_py = np.log(part.mean(axis=0, keepdims=True))
        # 0 * log 0 = 0: a class no example predicts contributes nothing.
        kl = np.where(part > 0, part * (log_part - log_py), 0.0).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


class StreamingInceptionScore:
    """:func:`inception_score_from_logits` over a stream, without keeping the logits.

    With the number of examples ``n`` known up front, the parts
    ``[i n // splits, (i + 1) n // splits)`` are known too, and each part's
    mean KL needs only two sums: ``sum_x sum_y p log p`` and the vector
    ``sum_x p(y|x)`` (since ``sum_x sum_y p(y|x) log p(y) = m sum_y p(y) log p(y)``
    for a part of m examples with mean prediction p(y)). Memory: ``splits x K``
    float64, whatever n (the evaluator's 12,000 pairs x 4 rows of 1000 logits
    would be 190 MB). Equal to the batch function within float64 rounding
    (tests/test_metrics.py).

    Example:
      acc = StreamingInceptionScore(num_examples=n, splits=10)
      for logits in batches: acc.update(logits)   # [b, K], in order
      mean, std = acc.result()
    """

    def __init__(self, num_examples: int, splits: int = 10):
        self.n, self.splits = int(num_examples), int(splits)
        if self.splits < 1 or self.n < self.splits:
            raise ValueError(f"metrics.StreamingInceptionScore: {self.n} examples for {self.splits} splits")
        self.bounds = [i * self.n // self.splits for i in range(self.splits + 1)]
        self.seen = 0
        self._plogp = np.zeros(self.splits)  # per part: sum_x sum_y p log p
        self._psum = None  # [splits, K]: per part, sum_x p(y|x)

    def update(self, logits) -> None:
        """Adds the next examples' logits [b, K] (in the order of the parts)."""
        x = np.asarray(logits, np.float64)
        if x.ndim != 2:
            raise ValueError(f"metrics.StreamingInceptionScore.update: expected [b, K] logits, got {x.shape}")
        if self._psum is None:
            self._psum = np.zeros((self.splits, x.shape[1]))
        elif x.shape[1] != self._psum.shape[1]:
            raise ValueError(
                f"metrics.StreamingInceptionScore.update: {x.shape[1]} classes, expected {self._psum.shape[1]}"
            )
        if self.seen + x.shape[0] > self.n:
            raise ValueError(f"metrics.StreamingInceptionScore.update: more than the {self.n} examples declared")
        log_p = x - scipy.special.logsumexp(x, axis=1, keepdims=True)
        p = np.exp(log_p)
        plogp = np.where(p > 0, p * log_p, 0.0).sum(axis=1)
        part = np.searchsorted(self.bounds, self.seen + np.arange(x.shape[0]), side="right") - 1
        np.add.at(self._plogp, part, plogp)
        np.add.at(self._psum, part, p)
        self.seen += x.shape[0]

    def result(self) -> tuple[float, float]:
        """(mean, std) over the parts, as :func:`inception_score_from_logits`."""
        if self.seen != self.n:
            raise ValueError(f"metrics.StreamingInceptionScore: {self.seen} examples seen, {self.n} declared")
        scores = []
        for i in range(self.splits):
            m = self.bounds[i + 1] - self.bounds[i]
            py = self._psum[i] / m
            with np.errstate(divide="ignore", invalid="ignore"):
                cross = np.where(py > 0, py * np.log(py), 0.0).sum()
            scores.append(np.exp(self._plogp[i] / m - cross))
        return float(np.mean(scores)), float(np.std(scores))


def activation_statistics(acts) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, N - 1) of activations [N, D], float64."""
    a = np.asarray(acts, np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"metrics.activation_statistics: need [N >= 2, D] activations, got {a.shape}")
    return a.mean(axis=0), np.cov(a, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance of two Gaussians (the FID formula, pytorch-fid handling).

    ``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))``. When the matrix
    square root is not finite (a singular product), ``eps`` is added to both
    diagonals; an imaginary part larger than 1e-3 on the diagonal of the root
    is an error (ill-conditioned statistics), smaller ones are dropped.

    Args:
      mu1, mu2: [D] means; sigma1, sigma2: [D, D] covariances.

    Returns:
      The distance, >= 0 up to round-off.
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    s1, s2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"metrics.frechet_distance: shapes mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}"
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"metrics.frechet_distance: imaginary component {m} in sqrt(S1 S2)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid_from_activations(act_a, act_b) -> float:
    """FID of two activation sets [N, D] and [M, D] (e.g. Inception pool, D = 2048)."""
    return frechet_distance(*activation_statistics(act_a), *activation_statistics(act_b))


class RunningStatistics:
    """Streaming mean and covariance of activations, in float64.

    Keeps the count, the mean and the sum of centred outer products, merged
    batch by batch with Chan et al.'s parallel update (the same sums as
    "sum and sum of outer products", without their cancellation when the mean
    is large), so 12,000 activations never need to be held: memory is
    O(D^2) whatever N.

    Example:
      stats = RunningStatistics()
      for acts in batches: stats.update(acts)   # acts [n, D]
      mu, sigma = stats.statistics()            # equals activation_statistics(all)
    """

    def __init__(self, dim: int | None = None):
        self.count = 0
        self.dim = dim
        self._mean = None if dim is None else np.zeros(dim)
        self._m2 = None if dim is None else np.zeros((dim, dim))

    def update(self, acts) -> None:
        """Adds a batch [n, D] (n >= 1)."""
        a = np.asarray(acts, np.float64)
        if a.ndim != 2:
            raise ValueError(f"metrics.RunningStatistics.update: expected [n, D], got {a.shape}")
        if self.dim is None:
            self.dim = a.shape[1]
            self._mean = np.zeros(self.dim)
            self._m2 = np.zeros((self.dim, self.dim))
        if a.shape[1] != self.dim:
            raise ValueError(f"metrics.RunningStatistics.update: dimension {a.shape[1]}, expected {self.dim}")
        n_b = a.shape[0]
        if n_b == 0:
            return
        mean_b = a.mean(axis=0)
        c = a - mean_b
        m2_b = c.T @ c
        n = self.count + n_b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (n_b / n)
        self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.count * n_b / n)
        self.count = n

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean [D], unbiased covariance [D, D]); needs at least 2 activations."""
        if self.count < 2:
            raise ValueError(f"metrics.RunningStatistics: {self.count} activations, need at least 2")
        return self._mean.copy(), self._m2 / (self.count - 1)


# --------------------------------------------------------------------------- parsing


def parsing_confusion(pred_labels, true_labels, num_labels: int) -> np.ndarray:
    """Confusion matrix of label maps: rows are the true label, columns the prediction.

    Args:
      pred_labels, true_labels: integer maps of the same shape (e.g. [B, H, W]),
        values in [0, num_labels).
      num_labels: L.

    Returns:
      [L, L] int64 counts; sum over a batch stream by adding them.
    """
    p = np.asarray(pred_labels)
    t = np.asarray(true_labels)
    if p.shape != t.shape:
        raise ValueError(f"metrics.parsing_confusion: shapes differ: {p.shape} vs {t.shape}")
    for name, x in (("pred_labels", p), ("true_labels", t)):
        if x.size and (not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= num_labels):
            raise ValueError(
                f"metrics.parsing_confusion: {name} must be integers in [0, {num_labels}), "
                f"got dtype {x.dtype}, range [{x.min()}, {x.max()}]"
            )
    idx = t.astype(np.int64).ravel() * num_labels + p.astype(np.int64).ravel()
    return np.bincount(idx, minlength=num_labels * num_labels).reshape(num_labels, num_labels)


def iou_per_label(conf) -> np.ndarray:
    """[L] intersection over union per label; NaN for labels absent from truth and prediction."""
    c = np.asarray(conf, np.float64)
    inter = np.diag(c)
    union = c.sum(axis=0) + c.sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, np.nan)


def miou_from_confusion(conf) -> float:
    """Mean IoU over the labels present in the truth or the prediction."""
    iou = iou_per_label(conf)
    if np.isnan(iou).all():
        raise ValueError("metrics.miou_from_confusion: empty confusion matrix")
    return float(np.nanmean(iou))


def pixel_accuracy_from_confusion(conf) -> float:
    """Fraction of pixels whose predicted label is the true one."""
    c = np.asarray(conf, np.float64)
    if c.sum() == 0:
        raise ValueError("metrics.pixel_accuracy_from_confusion: empty confusion matrix")
    return float(np.trace(c) / c.sum())


# --------------------------------------------------------------------------- keypoints


# Heatmap peak below which a joint counts as not detected (pose-gan map_to_cord).
POSE_THRESHOLD = 0.1


def heatmaps_to_keypoints(heatmaps, threshold: float = POSE_THRESHOLD) -> np.ndarray:
    """Keypoints at the heatmap maxima (pose-gan ``map_to_cord``).

    Args:
      heatmaps: [B, H, W, K] pose detector output in [0, 1].
      threshold: a channel whose maximum is below this gives a missing joint.

    Returns:
      [B, K, 2] float32 (y, x) pixels of the first maximum, -1 where missing.
    """
    hm = np.asarray(heatmaps, np.float32)
    if hm.ndim != 4:
        raise ValueError(f"heatmaps_to_keypoints: expected [B, H, W, K], got {hm.shape}")
    b, h, w, k = hm.shape
    flat = hm.transpose(0, 3, 1, 2).reshape(b, k, h * w)
    idx = flat.argmax(-1)
    peak = np.take_along_axis(flat, idx[..., None], -1)[..., 0]
    kp = np.stack([idx // w, idx % w], -1).astype(np.float32)
    return np.where((peak >= threshold)[..., None], kp, np.float32(geometry.MISSING))


def pckh_counts(pred_kp, true_kp, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per-example PCKh counts, the Pose-Transfer / PATN rule for COCO-18.

    Without a head box in COCO-18, the head size is the bounding box (width w,
    height h) of the true nose, neck, eyes and ears; an example with fewer
    than two of them visible is left out (total 0), as in ``calPCKH_*.py``. A
    joint visible in the truth counts in the total; it is correct when also
    predicted and ``|dx| < threshold * w`` and ``|dy| < threshold * h``
    (strict, per axis).

    Args:
      pred_kp, true_kp: [B, 18, 2] (y, x) pixels, -1 missing (e.g. pose
        detector P on the generated image vs the target keypoints).
      threshold: fraction of the head size (0.5 for PCKh@0.5).

    Returns:
      (correct [B] int64, total [B] int64); PCKh = sum(correct) / sum(total).
    """
    p = np.asarray(pred_kp, np.float64)
    t = np.asarray(true_kp, np.float64)
    if p.shape != t.shape or p.ndim != 3 or p.shape[1:] != (geometry.NUM_KEYPOINTS, 2):
        raise ValueError(f"metrics.pckh_counts: expected two [B, 18, 2] arrays, got {p.shape} and {t.shape}")
    t_vis = (t != geometry.MISSING).all(axis=-1)
    p_vis = (p != geometry.MISSING).all(axis=-1)
    head = t[:, PCKH_HEAD]
    head_vis = t_vis[:, PCKH_HEAD]
    big = np.inf
    lo = np.where(head_vis[..., None], head, big).min(axis=1)
    hi = np.where(head_vis[..., None], head, -big).max(axis=1)
    size = hi - lo  # [B, 2] (h, w)
    ok = head_vis.sum(axis=1) >= 2
    size = np.where(ok[:, None], size, 0.0)
    d = np.abs(p - t)
    right = (d < threshold * size[:, None, :]).all(axis=-1) & p_vis & t_vis
    correct = np.where(ok, right.sum(axis=1), 0).astype(np.int64)
    total = np.where(ok, t_vis.sum(axis=1), 0).astype(np.int64)
    return correct, total


def pckh(pred_kp, true_kp, threshold: float = 0.5) -> float:
    """PCKh over a batch: ``sum(correct) / sum(total)`` of :func:`pckh_counts`."""
    correct, total = pckh_counts(pred_kp, true_kp, threshold)
    if total.sum() == 0:
        raise ValueError("metrics.pckh: no example has a measurable head size")
    return float(correct.sum() / total.sum())


# --------------------------------------------------------------------------- images


def l1_distance(a, b, data_range: float | None = None) -> np.ndarray:
    """Per-example mean absolute error in [0, 1] image units.

    Args:
      a, b: [B, H, W, C] images of one dtype: uint8 in [0, 255] (range 255) or
        float in [-1, 1] (range 2, the network convention). Other float ranges
        need ``data_range``.
      data_range: overrides the range implied by the dtype.

    Returns:
      [B] float64 in [0, 1].
    """
    x = np.asarray(a)
    y = np.asarray(b)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"metrics.l1_distance: shapes {x.shape} and {y.shape}")
    if data_range is None:
        if x.dtype == np.uint8 and y.dtype == np.uint8:
            data_range = 255.0
        elif np.issubdtype(x.dtype, np.floating) and np.issubdtype(y.dtype, np.floating):
            if min(x.min(), y.min()) < -1.0 - 1e-3 or max(x.max(), y.max()) > 1.0 + 1e-3:
                raise ValueError("metrics.l1_distance: float images outside [-1, 1]; pass data_range explicitly")
            data_range = 2.0
        else:
            raise ValueError(
                f"metrics.l1_distance: dtypes {x.dtype} / {y.dtype}: use uint8 or float pairs, or pass data_range"
            )
    diff = np.abs(x.astype(np.float64) - y.astype(np.float64)) / float(data_range)
    return diff.reshape(diff.shape[0], -1).mean(axis=1)


def paint_parsing(source_images, source_parsing, target_parsing, num_labels: int = 10) -> np.ndarray:
    """The "paint by numbers" baseline: the target parsing in the source's mean colours.

    Every pixel of label l in the target map gets the mean colour of the source
    image's pixels of label l. A label the target has and the source lacks gets
    the mean colour of the source's person (every label but background; the
    whole image if the source map has no person). No network is involved, so a
    generator that does not beat this has not learnt more than the colours of
    the parsing it was given.

    Args:
      source_images: [B, H, W, 3] uint8.
      source_parsing, target_parsing: [B, H, W] integer labels in [0, num_labels).
      num_labels: L.

    Returns:
      [B, H, W, 3] uint8 (means rounded half up).
    """
    img = np.asarray(source_images)
    src = np.asarray(source_parsing).astype(np.int64)
    tgt = np.asarray(target_parsing).astype(np.int64)
    if img.ndim != 4 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"metrics.paint_parsing: source_images must be uint8 [B, H, W, 3], got "
                         f"{img.dtype} {img.shape}")  # fmt: skip
    if src.shape != img.shape[:3] or tgt.shape != img.shape[:3]:
        raise ValueError(f"metrics.paint_parsing: parsing maps {src.shape} / {tgt.shape} do not match "
                         f"the images {img.shape[:3]}")  # fmt: skip
    for name, m in (("source_parsing", src), ("target_parsing", tgt)):
        if m.size and (m.min() < 0 or m.max() >= num_labels):
            raise ValueError(f"metrics.paint_parsing: {name} has labels outside [0, {num_labels})")
    b = img.shape[0]
    x = img.reshape(b, -1, 3).astype(np.float64)
    s = src.reshape(b, -1)
    out = np.empty((b, tgt[0].size, 3), np.float64)
    for i in range(b):
        counts = np.bincount(s[i], minlength=num_labels).astype(np.float64)
        sums = np.stack([np.bincount(s[i], weights=x[i, :, c], minlength=num_labels) for c in range(3)], -1)
        person = counts[1:].sum()
        fallback = sums[1:].sum(0) / person if person else x[i].mean(0)
        means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], fallback[None])
        out[i] = means[tgt[i].reshape(-1)]
    return np.floor(out + 0.5).clip(0, 255).astype(np.uint8).reshape(img.shape)
