"""Keypoints -> conditioning tensors, as pure TensorFlow ops.

Everything a network sees is made here, both in the ``tf.data`` pipeline and
inside the exported SavedModel, so training and serving cannot disagree.

Conventions:
  * Keypoints are ``[B, 18, 2]`` float32 ``(y, x)`` in pixels of the image,
    COCO-18 order (``KEYPOINT_NAMES``); a joint with any coordinate ``-1`` is
    missing.
  * Pixel ``(i, j)`` of a map of size ``(h, w)`` computed for an image of size
    ``(H, W)`` sits at image coordinates ``(i * H / h, j * W / w)``: the
    pose-gan convention, in which a transform's translation scales with the
    feature level and nothing else changes.
  * Affine transforms are 8 numbers ``[a0 a1 a2 b0 b1 b2 c0 c1]`` (c0 = c1 = 0)
    in ``(x, y)`` order, mapping an OUTPUT point ``(x, y)`` to the INPUT point
    ``(a0 x + a1 y + a2, b0 x + b1 y + b2)`` that it samples: the inverse map,
    as image-transform ops expect. For the deformable skip, output = target
    pose, input = source pose.

All functions take batched tensors, work in ``tf.data`` maps and
``tf.function``, and compile under XLA (``jit_compile=True``): the tests prove
each of these claims.
"""

from __future__ import annotations

import tensorflow as tf

# The COCO-18 layout lives in spt_tf.skeleton (TF-free); re-exported here.
from spt_tf.skeleton import (  # noqa: F401
    HEAD,
    INC_FROM,
    KEYPOINT_NAMES,
    KP,
    LIMB_PARTS,
    MASK_LIMBS,
    MIRROR,
    MISSING,
    NUM_KEYPOINTS,
    NUM_PARTS,
    PART_NAMES,
    SKELETON,
    TORSO,
)  # fmt: skip

# LIMB_PARTS as index / factor vectors, so the 8 limbs are gathered at once.
_LIMB_FROM = tuple(fr for fr, _, _, _ in LIMB_PARTS)
_LIMB_TO = tuple(to for _, to, _, _ in LIMB_PARTS)
_LIMB_INC_FIT = tuple(inc for _, _, inc, _ in LIMB_PARTS)
_LIMB_INC_MASK = tuple(inc for _, _, _, inc in LIMB_PARTS)
LIMB_HALF_WIDTH = 0.2  # times the body scale st
HEAD_HALF_SIDE = 0.4  # times the body scale st
# part_transforms fits every part to _FIT_POINTS points: the head's 5 keypoints
# and 2 shoulders; the torso's 4 keypoints and the limbs' 4 corners are padded
# with zero-weight points (weights _CORNER_WEIGHTS).
_HEAD_FIT = HEAD + (KP["Lsho"], KP["Rsho"])
_FIT_POINTS = len(_HEAD_FIT)
_CORNER_WEIGHTS = (1.0,) * 4 + (0.0,) * (_FIT_POINTS - 4)
# Translation of a transform that samples nothing (part missing / singular).
OFF_IMAGE = 1.0e5


# The public functions are straight-line TF ops (their Python loops and ifs run
# on Python values only), so AutoGraph has nothing to convert: skipping its
# source-to-source conversion saves seconds on a process's first trace of them.
_plain_tf = tf.autograph.experimental.do_not_convert


@_plain_tf
def present(keypoints: tf.Tensor) -> tf.Tensor:
    """[..., 18, 2] -> [..., 18] bool: joint has no -1 coordinate."""
    return tf.reduce_all(tf.not_equal(keypoints, MISSING), axis=-1)


def _grid(height: int, width: int, image_size: tuple[int, int] | None):
    """Image-space (y, x) coordinates of the pixels of an h x w map, each [h, w]."""
    ih, iw = image_size if image_size is not None else (height, width)
    ys = tf.range(height, dtype=tf.float32) * (float(ih) / float(height))
    xs = tf.range(width, dtype=tf.float32) * (float(iw) / float(width))
    yy, xx = tf.meshgrid(ys, xs, indexing="ij")
    return yy, xx


@_plain_tf
def mirror_keypoints(keypoints, width) -> tf.Tensor:
    """``[..., 18, 2]`` (y, x) joints of the left-right mirrored image: x -> width - 1 - x, sides swapped.

    Missing joints stay missing.
    """
    kp = tf.gather(tf.convert_to_tensor(keypoints, tf.float32), list(MIRROR), axis=-2)
    flipped = tf.stack([kp[..., 0], tf.cast(width, tf.float32) - 1.0 - kp[..., 1]], -1)
    return tf.where(tf.equal(kp, MISSING), kp, flipped)


def pose_heatmaps(
    keypoints: tf.Tensor,
    height: int,
    width: int,
    sigma: float = 6.0,
    image_size: tuple[int, int] | None = None,
) -> tf.Tensor:
    """Gaussian pose maps ``exp(-d^2 / (2 sigma^2))``.

    Args:
      keypoints: [B, 18, 2] (y, x) in image pixels, -1 missing.
      height, width: size of the output maps.
      sigma: Gaussian width in image pixels.
      image_size: (H, W) of the image the keypoints refer to; defaults to
        (height, width).

    Returns:
      [B, height, width, 18] float32 in [0, 1]; missing joints give zeros.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    yy, xx = _grid(height, width, image_size)
    ky = keypoints[:, :, 0][:, None, None, :]
    kx = keypoints[:, :, 1][:, None, None, :]
    d2 = (yy[None, :, :, None] - ky) ** 2 + (xx[None, :, :, None] - kx) ** 2
    maps = tf.exp(-d2 / (2.0 * sigma * sigma))
    vis = tf.cast(present(keypoints), tf.float32)[:, None, None, :]
    return maps * vis


def _segment_rect(yy, xx, p0, p1, half_width):
    """Pixels inside the rectangle of half width `half_width` around p0->p1.

    yy, xx: [h, w]; p0, p1: [..., 2] (y, x); half_width: [...] or broadcasting
    against it (e.g. [B, 1] for [B, 8] limbs). Returns [..., h, w] bool.
    """
    d = p1 - p0
    length2 = tf.reduce_sum(d * d, axis=-1)
    py = yy - p0[..., 0, None, None]
    px = xx - p0[..., 1, None, None]
    dy = d[..., 0, None, None]
    dx = d[..., 1, None, None]
    safe_len2 = tf.maximum(length2, 1e-12)[..., None, None]
    t = (py * dy + px * dx) / safe_len2
    # c * c, not c ** 2: the square is then exact float32 whatever the layout
    # (Eigen's vectorised pow may be an ulp off), as the numpy twin in data.pseudo_pairs.
    cross = py * dx - px * dy
    perp2 = cross * cross / safe_len2
    hw = half_width[..., None, None]
    inside = (t >= 0.0) & (t <= 1.0) & (perp2 <= hw * hw)
    return inside & (length2[..., None, None] > 0.0)


def _closing(mask: tf.Tensor, size: int) -> tf.Tensor:
    """Binary morphological closing (dilation then erosion) by a square."""
    x = mask[..., None]
    x = tf.nn.max_pool2d(x, size, 1, "SAME")
    # max_pool2d ignores the padding, so the outside never erodes the mask: the
    # same border rule as scikit-image's grey erosion (mode "reflect") in PG2.
    x = -tf.nn.max_pool2d(-x, size, 1, "SAME")
    return x[..., 0]


@_plain_tf
def pose_masks(
    keypoints: tf.Tensor,
    height: int,
    width: int,
    radius: float = 4.0,
    closing: int = 5,
    image_size: tuple[int, int] | None = None,
) -> tf.Tensor:
    """PG2 pose mask: limb rectangles and joint discs, then dilation + erosion.

    Args:
      keypoints: [B, 18, 2] (y, x), -1 missing.
      height, width: output size.
      radius: disc radius and limb half width, image pixels.
      closing: side of the square structuring element (0 disables).
      image_size: (H, W) of the keypoints' image; defaults to (height, width).

    Returns:
      [B, height, width, 1] float32 in {0, 1}.
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    yy, xx = _grid(height, width, image_size)
    vis = present(keypoints)
    fr = tf.constant([a for a, _ in MASK_LIMBS], tf.int32)
    to = tf.constant([b for _, b in MASK_LIMBS], tf.int32)
    p0 = tf.gather(keypoints, fr, axis=1)  # [B, L, 2]
    p1 = tf.gather(keypoints, to, axis=1)
    limb_ok = tf.gather(vis, fr, axis=1) & tf.gather(vis, to, axis=1)
    rect = _segment_rect(yy, xx, p0, p1, tf.fill(tf.shape(p0)[:2], float(radius)))
    rect = rect & limb_ok[..., None, None]
    d2 = (yy[None, None] - keypoints[..., 0, None, None]) ** 2 + (xx[None, None] - keypoints[..., 1, None, None]) ** 2
    disc = (d2 <= radius * radius) & vis[..., None, None]
    mask = tf.cast(tf.reduce_any(rect, axis=1) | tf.reduce_any(disc, axis=1), tf.float32)
    if closing:
        mask = _closing(mask, closing)
    return mask[..., None]


@_plain_tf
def body_scale(keypoints: tf.Tensor, default: float | tf.Tensor = 0.0) -> tf.Tensor:
    """Shoulder-hip distance ``st`` averaged over the sides present; [B].

    Returns ``default`` for a pose with neither side (no hip-shoulder pair).
    """
    keypoints = tf.convert_to_tensor(keypoints, tf.float32)
    vis = present(keypoints)
    # Both sides at once: [B, 2] (right, left).
    hips = tf.constant([KP["Rhip"], KP["Lhip"]], tf.int32)
    shoulders = tf.constant([KP["Rsho"], KP["Lsho"]], tf.int32)
    d = tf.gather(keypoints, hips, axis=1) - tf.gather(keypoints, shoulders, axis=1)
    # d * d, not d ** 2: Eigen's vectorised pow may be an ulp off x * x.
    d2 = tf.reduce_sum(d * d, -1)
    ok = tf.gather(vis, hips, axis=1) & tf.gather(vis, shoulders, axis=1)
    n = tf.reduce_sum(tf.cast(ok, tf.float32), -1)
    st = tf.sqrt(tf.reduce_sum(tf.where(ok, d2, 0.0), -1) / tf.maximum(n, 1.0))
    return tf.where(n > 0, st, tf.cast(default, tf.float32) * tf.ones_like(st))


def _limb_ends(fr, to, inc_to, inc_from=INC_FROM):
    """Ends (fr2, to2) [..., 2] of a limb's axis, lengthened as pose-gan's estimate_polygon.

    fr, to: [..., 2] (y, x); inc_to: a number or a tensor broadcasting against them.
    """
    fr2 = fr + (fr - to) * inc_from
    to2 = to + (to - fr2) * inc_to
    return fr2, to2


def _limb_polygon(fr, to, st, inc_to, inc_from=INC_FROM):
    """4 corners [..., 4, 2] (y, x) of a limb rectangle (pose-gan estimate_polygon).

    fr, to: [..., 2]; st: body scale broadcasting against [...]; inc_to: a number
    or a tensor broadcasting against [..., 2].
    """
    fr2, to2 = _limb_ends(fr, to, inc_to, inc_from)
    d = fr2 - to2
    n = tf.stack([-d[..., 1], d[..., 0]], axis=-1)
    norm = tf.norm(n, axis=-1, keepdims=True)
    n = n / tf.maximum(norm, 1e-6) * (LIMB_HALF_WIDTH * st)[..., None]
    return tf.stack([fr2 + n, fr2 - n, to2 - n, to2 + n], axis=-2)


def _inv3(m):
    """Batched inverse and determinant of 3x3 matrices, XLA-friendly."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    co00, co01, co02 = e * i - f * h, -(d * i - f * g), d * h - e * g
    co10, co11, co12 = -(b * i - c * h), a * i - c * g, -(a * h - b * g)
    co20, co21, co22 = b * f - c * e, -(a * f - c * d), a * e - b * d
    det = a * co00 + b * co01 + c * co02
    adj = tf.stack(
        [
            tf.stack([co00, co10, co20], -1),
            tf.stack([co01, co11, co21], -1),
            tf.stack([co02, co12, co22], -1),
        ],
        -2,
    )
    safe = tf.where(tf.abs(det) > 1e-12, det, tf.ones_like(det))
    return adj / safe[..., None, None], det


# A point set spans the plane when the smaller eigenvalue of its scatter matrix
# exceeds this fraction of the larger one (about: thinner than 0.3 % of its
# length is a line). Scale-free and far above float32 rounding (~1e-7), which
# an absolute determinant threshold is not.
_MIN_SPREAD_RATIO = 1e-5


def _spans_plane(centred: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """[..., N, 2] centred points, [..., N] weights -> [...] bool: not collinear."""
    sy = tf.reduce_sum(w * centred[..., 0] ** 2, -1)
    sx = tf.reduce_sum(w * centred[..., 1] ** 2, -1)
    sxy = tf.reduce_sum(w * centred[..., 0] * centred[..., 1], -1)
    # det / trace^2 = l1 l2 / (l1 + l2)^2 ~ l_min / l_max.
    return sx * sy - sxy * sxy > _MIN_SPREAD_RATIO * (sx + sy) ** 2


@_plain_tf
def fit_affine(dst_pts: tf.Tensor, src_pts: tf.Tensor, weights: tf.Tensor):
    """Weighted least-squares affine mapping ``dst_pts`` onto ``src_pts``.

    Args:
      dst_pts, src_pts: [..., N, 2] in (y, x).
      weights: [..., N] in {0, 1}; zero-weight points are ignored.

    Returns:
      (transforms [..., 8] in the (x, y) output->input convention, ok [...] bool).
      ``ok`` is False when either weighted point set is (nearly) collinear,
      i.e. fewer than 3 points span the plane, or the fit is singular.
    """
    w = tf.cast(weights, tf.float32)
    # Centre the points for a well-conditioned normal matrix.
    wsum = tf.maximum(tf.reduce_sum(w, -1, keepdims=True), 1e-6)
    cx = tf.reduce_sum(dst_pts * w[..., None], -2, keepdims=True) / wsum[..., None]
    cy = tf.reduce_sum(src_pts * w[..., None], -2, keepdims=True) / wsum[..., None]
    xd = dst_pts - cx
    xs = src_pts - cy
    ones = tf.ones_like(xd[..., :1])
    # Design rows [x, y, 1] in (x, y) order.
    a = tf.concat([xd[..., 1:2], xd[..., 0:1], ones], -1)  # [..., N, 3]
    aw = a * w[..., None]
    ata = tf.linalg.matmul(aw, a, transpose_a=True)  # [..., 3, 3]
    b = tf.concat([xs[..., 1:2], xs[..., 0:1]], -1)  # [..., N, 2] (x, y)
    atb = tf.linalg.matmul(aw, b, transpose_a=True)  # [..., 3, 2]
    inv, _ = _inv3(ata)
    theta = tf.linalg.matmul(inv, atb)  # [..., 3, 2]: columns are x', y'
    # Singular unless both point sets span the plane (a degenerate source set
    # would collapse the part onto a line).
    ok = _spans_plane(xd, w) & _spans_plane(xs, w)
    a0, a1, a2 = theta[..., 0, 0], theta[..., 1, 0], theta[..., 2, 0]
    b0, b1, b2 = theta[..., 0, 1], theta[..., 1, 1], theta[..., 2, 1]
    # Undo centring: x_in - cy_x = A (x_out - cx) + t.
    cdx, cdy = cx[..., 0, 1], cx[..., 0, 0]
    csx, csy = cy[..., 0, 1], cy[..., 0, 0]
    a2 = a2 + csx - a0 * cdx - a1 * cdy
    b2 = b2 + csy - b0 * cdx - b1 * cdy
    lin_det = a0 * b1 - a1 * b0
    ok = ok & (tf.abs(lin_det) > 1e-6)
    zeros = tf.zeros_like(a0)
    tr = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], -1)
    return tr, ok


def _off_image(shape_like):
    zeros = tf.zeros_like(shape_like)
    ones = tf.ones_like(shape_like)
    return tf.stack([ones, zeros, zeros + OFF_IMAGE, zeros, ones, zeros + OFF_IMAGE, zeros, zeros], -1)


@_plain_tf
def part_transforms(source_keypoints: tf.Tensor, target_keypoints: tf.Tensor) -> tf.Tensor:
    """The 10 body-part affine transforms of the deformable skip.

    Each maps a point of the target pose to the point of the source pose it
    samples (least squares over the part's corners; pose-gan definition).
    A part missing in the target, or a singular fit, gives a transform whose
    samples fall off the image (zeros). A limb missing in the source uses the
    mirrored (L <-> R) source limb.

    All 10 parts are solved as one batch of weighted fits over ``[B, 10, 7, 2]``
    point sets (torso: 4 keypoints; head: the head keypoints present in both
    poses and both shoulders; limbs: 4 polygon corners; the rest zero-weight
    padding), which keeps the graph small enough to trace and XLA-compile fast.

    Args:
      source_keypoints, target_keypoints: [B, 18, 2] (y, x), -1 missing.

    Returns:
      [B, 10, 8] float32, in image pixels; see :func:`scale_transforms` for
      feature levels.
    """
    src = tf.convert_to_tensor(source_keypoints, tf.float32)
    tgt = tf.convert_to_tensor(target_keypoints, tf.float32)
    vs, vt = present(src), present(tgt)
    st_s, st_t = body_scale(src)[:, None], body_scale(tgt)[:, None]  # [B, 1]

    # Torso and head: keypoints of both poses, as [B, 2, 7] point sets. Index 0
    # pads the torso's 4 points to 7; the padding has weight 0.
    kp_sets = tf.constant([TORSO + (0,) * (_FIT_POINTS - len(TORSO)), _HEAD_FIT], tf.int32)
    both = tf.gather(vs, kp_sets, axis=1) & tf.gather(vt, kp_sets, axis=1)  # [B, 2, 7]
    torso_ok = tf.reduce_all(both[:, 0, : len(TORSO)], -1)
    any_head = tf.reduce_any(both[:, 1, : len(HEAD)], -1)
    corner_w = tf.constant(_CORNER_WEIGHTS, tf.float32)
    torso_w = tf.cast(torso_ok, tf.float32)[:, None] * corner_w
    kp_w = tf.stack([torso_w, tf.cast(both[:, 1], tf.float32)], 1)

    # Limbs: 4 polygon corners each, all 8 at once ([B, 8, ...]); a limb missing
    # in the source takes the mirrored source limb.
    fr = tf.constant(_LIMB_FROM, tf.int32)
    to = tf.constant(_LIMB_TO, tf.int32)
    mfr = tf.constant([MIRROR[i] for i in _LIMB_FROM], tf.int32)
    mto = tf.constant([MIRROR[i] for i in _LIMB_TO], tf.int32)
    inc = tf.constant(_LIMB_INC_FIT, tf.float32)[:, None]  # [8, 1] against [B, 8, 2]
    t_ok = tf.gather(vt, fr, axis=1) & tf.gather(vt, to, axis=1)
    s_ok = tf.gather(vs, fr, axis=1) & tf.gather(vs, to, axis=1)
    m_ok = tf.gather(vs, mfr, axis=1) & tf.gather(vs, mto, axis=1)
    poly_t = _limb_polygon(tf.gather(tgt, fr, axis=1), tf.gather(tgt, to, axis=1), st_t, inc)
    s_fr = tf.where(s_ok[..., None], tf.gather(src, fr, axis=1), tf.gather(src, mfr, axis=1))
    s_to = tf.where(s_ok[..., None], tf.gather(src, to, axis=1), tf.gather(src, mto, axis=1))
    poly_s = _limb_polygon(s_fr, s_to, st_s, inc)
    limb_ok = t_ok & (s_ok | m_ok) & (st_s > 0) & (st_t > 0)
    pad = [[0, 0], [0, 0], [0, _FIT_POINTS - 4], [0, 0]]
    limb_w = tf.zeros_like(t_ok, tf.float32)[..., None] + corner_w  # [B, 8, 7]

    dst = tf.concat([tf.gather(tgt, kp_sets, axis=1), tf.pad(poly_t, pad)], 1)  # [B, 10, 7, 2]
    srcp = tf.concat([tf.gather(src, kp_sets, axis=1), tf.pad(poly_s, pad)], 1)
    weights = tf.concat([kp_w, limb_w], 1)  # [B, 10, 7]
    trs, ok = fit_affine(dst, srcp, weights)
    part_ok = tf.concat([torso_ok[:, None], any_head[:, None], limb_ok], 1)  # [B, 10]
    return tf.where((ok & part_ok)[..., None], trs, _off_image(trs[..., 0]))


@_plain_tf
def scale_transforms(transforms: tf.Tensor, scale: float) -> tf.Tensor:
    """Transforms in image pixels -> a map scaled by ``scale`` (e.g. 1/4)."""
    s = tf.constant([1, 1, scale, 1, 1, scale, 1, 1], tf.float32)
    return transforms * s


@_plain_tf
def part_masks(
    keypoints: tf.Tensor,
    height: int,
    width: int,
    image_size: tuple[int, int] | None = None,
) -> tf.Tensor:
    """Target-pose part masks of the deformable skip, at any resolution.

    Torso: all ones (pose-gan); head: a square of half side 0.4 st around the
    mean of the visible head keypoints; limbs: the limb rectangle (inc 0.5 for
    lower limbs). A part missing in the pose is empty, and so are the head and
    the limbs of a pose without a body scale (no hip-shoulder pair). Evaluated
    analytically at the map's pixels, so each feature level gets exact masks
    without resizing.

    Args:
      keypoints: [B, 18, 2] target keypoints (y, x), -1 missing.
      height, width: map size.
      image_size: (H, W) of the keypoints' image; defaults to (height, width).

    Returns:
      [B, 10, height, width] float32 in {0, 1}.
    """
    kp = tf.convert_to_tensor(keypoints, tf.float32)
    yy, xx = _grid(height, width, image_size)
    vis = present(kp)
    st = body_scale(kp)
    head = tf.constant(HEAD, tf.int32)
    hv = tf.cast(tf.gather(vis, head, axis=1), tf.float32)
    hk = tf.gather(kp, head, axis=1)
    n = tf.reduce_sum(hv, -1)
    center = tf.reduce_sum(hk * hv[..., None], 1) / tf.maximum(n, 1.0)[:, None]
    half = (HEAD_HALF_SIDE * st)[:, None, None]
    in_head = (tf.abs(yy[None] - center[:, 0, None, None]) <= half) & (
        tf.abs(xx[None] - center[:, 1, None, None]) <= half
    )
    # Without a body scale the square has side 0: empty, as the limbs' masks and
    # face_boxes (not the pixels that happen to sit exactly on the centre).
    head_mask = tf.cast(in_head & ((n > 0) & (st > 0))[:, None, None], tf.float32)
    # The 8 limb rectangles at once: [B, 8, h, w].
    fr = tf.constant(_LIMB_FROM, tf.int32)
    to = tf.constant(_LIMB_TO, tf.int32)
    inc = tf.constant(_LIMB_INC_MASK, tf.float32)[:, None]  # [8, 1] against [B, 8, 2]
    ok = tf.gather(vis, fr, axis=1) & tf.gather(vis, to, axis=1) & (st > 0)[:, None]
    p0, p1 = _limb_ends(tf.gather(kp, fr, axis=1), tf.gather(kp, to, axis=1), inc)
    rect = _segment_rect(yy, xx, p0, p1, LIMB_HALF_WIDTH * st[:, None])
    limbs = tf.cast(rect & ok[..., None, None], tf.float32)
    torso = tf.ones_like(head_mask)  # pose-gan: the torso mask is all ones
    return tf.concat([torso[:, None], head_mask[:, None], limbs], 1)


@_plain_tf
def face_boxes(keypoints: tf.Tensor):
    """Face crop boxes: centre = mean of visible nose/eyes/ears, half side 0.4 st.

    Returns:
      (center [B, 2] (y, x), half_side [B], valid [B] bool). Invalid when no head
      keypoint is visible or the body scale is unknown.
    """
    kp = tf.convert_to_tensor(keypoints, tf.float32)
    head = tf.constant(HEAD, tf.int32)
    hv = tf.cast(tf.gather(present(kp), head, axis=1), tf.float32)
    n = tf.reduce_sum(hv, -1)
    center = tf.reduce_sum(tf.gather(kp, head, axis=1) * hv[..., None], 1) / tf.maximum(n, 1.0)[:, None]
    st = body_scale(kp)
    return center, HEAD_HALF_SIDE * st, (n > 0) & (st > 0)


@_plain_tf
def sample_bilinear(features: tf.Tensor, sy: tf.Tensor, sx: tf.Tensor) -> tf.Tensor:
    """Bilinear samples of ``features`` at (sy, sx), zero outside; by gathers.

    Args:
      features: [B, H, W, C].
      sy, sx: [B, ...] sample coordinates in pixels of ``features``.

    Returns:
      [B, ..., C], differentiable in ``features`` and the coordinates; XLA-safe
      (no ImageProjectiveTransform).
    """
    shape = tf.shape(features)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    hf = tf.cast(h, tf.float32)
    wf = tf.cast(w, tf.float32)
    x0 = tf.floor(sx)
    y0 = tf.floor(sy)
    fx = sx - x0
    fy = sy - y0
    flat = tf.reshape(features, [b, h * w, c])
    out = 0.0
    for dy, dx, wgt in ((0.0, 0.0, (1 - fy) * (1 - fx)), (0.0, 1.0, (1 - fy) * fx),
                        (1.0, 0.0, fy * (1 - fx)), (1.0, 1.0, fy * fx)):  # fmt: skip
        yi = y0 + dy
        xi = x0 + dx
        inside = (yi >= 0) & (yi <= hf - 1) & (xi >= 0) & (xi <= wf - 1)
        idx = tf.cast(tf.clip_by_value(yi, 0, hf - 1) * wf + tf.clip_by_value(xi, 0, wf - 1), tf.int32)
        vals = tf.gather(flat, tf.reshape(idx, [b, -1]), batch_dims=1)  # [B, N, C]
        wv = tf.reshape(tf.where(inside, wgt, 0.0), [b, -1, 1])
        out = out + vals * tf.cast(wv, vals.dtype)
    return tf.reshape(out, tf.concat([tf.shape(sy), [c]], 0))


def _apply(transforms, yy, xx):
    """Output grid [h, w] -> input coordinates [..., h, w] under transforms [..., 8]."""
    t = tf.cast(transforms, tf.float32)[..., None, None]
    sx = t[..., 0, :, :] * xx + t[..., 1, :, :] * yy + t[..., 2, :, :]
    sy = t[..., 3, :, :] * xx + t[..., 4, :, :] * yy + t[..., 5, :, :]
    return sy, sx


@_plain_tf
def warp(features: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Bilinear warp with zero fill (XLA-safe, differentiable).

    Args:
      features: [B, H, W, C].
      transforms: [B, 8] or [B, K, 8] in the output->input (x, y) convention,
        in pixels of this map (see :func:`scale_transforms`).

    Returns:
      [B, H, W, C] for [B, 8] transforms, [B, K, H, W, C] for [B, K, 8].
    """
    features = tf.convert_to_tensor(features)
    shape = tf.shape(features)
    yy, xx = tf.meshgrid(
        tf.range(tf.cast(shape[1], tf.float32)), tf.range(tf.cast(shape[2], tf.float32)), indexing="ij"
    )
    sy, sx = _apply(transforms, yy, xx)
    return sample_bilinear(features, sy, sx)


@_plain_tf
def crop_faces(images: tf.Tensor, keypoints: tf.Tensor, size: int) -> tf.Tensor:
    """Face crops by a fixed spatial transformer (bilinear, zero fill; XLA-safe).

    Args:
      images: [B, H, W, C] (keypoints refer to this size).
      keypoints: [B, 18, 2].
      size: crop side.

    Returns:
      [B, size, size, C]; all zeros where the face box is invalid.
    """
    center, half, valid = face_boxes(keypoints)
    scale = 2.0 * half / float(size)
    zeros = tf.zeros_like(scale)
    tr = tf.stack([scale, zeros, center[:, 1] - half, zeros, scale, center[:, 0] - half, zeros, zeros], -1)
    tr = tf.where(valid[:, None], tr, _off_image(scale))
    r = tf.range(size, dtype=tf.float32)
    yy, xx = tf.meshgrid(r, r, indexing="ij")
    sy, sx = _apply(tr, yy, xx)
    return sample_bilinear(images, sy, sx)


@_plain_tf
def one_hot_parsing(parsing: tf.Tensor, num_labels: int = 10) -> tf.Tensor:
    """[B, H, W] integer labels -> [B, H, W, L] float32 one-hot."""
    return tf.one_hot(tf.cast(parsing, tf.int32), num_labels, dtype=tf.float32)


@_plain_tf
def pose_conditioning(
    keypoints: tf.Tensor,
    height: int,
    width: int,
    sigma: float = 6.0,
    mask_radius: float = 4.0,
):
    """Pose heatmaps [B, H, W, 18] and pose mask [B, H, W, 1] for one pose."""
    return (
        pose_heatmaps(keypoints, height, width, sigma),
        pose_masks(keypoints, height, width, mask_radius),
    )


@_plain_tf
def pair_conditioning(
    source_keypoints: tf.Tensor,
    target_keypoints: tf.Tensor,
    height: int,
    width: int,
    sigma: float = 6.0,
    mask_radius: float = 4.0,
) -> dict[str, tf.Tensor]:
    """All pose tensors the networks need for a source -> target pair.

    Used verbatim by the input pipeline, the training steps (cycle) and the
    exported SavedModel.

    Returns a dict of float32 tensors:
      source_pose [B, H, W, 18], source_mask [B, H, W, 1],
      target_pose [B, H, W, 18], target_mask [B, H, W, 1],
      transforms [B, 10, 8] (target -> source, image pixels),
      part_masks [B, 10, H, W] (target pose).
    """
    src = tf.convert_to_tensor(source_keypoints, tf.float32)
    tgt = tf.convert_to_tensor(target_keypoints, tf.float32)
    return {
        "source_pose": pose_heatmaps(src, height, width, sigma),
        "source_mask": pose_masks(src, height, width, mask_radius),
        "target_pose": pose_heatmaps(tgt, height, width, sigma),
        "target_mask": pose_masks(tgt, height, width, mask_radius),
        "transforms": part_transforms(src, tgt),
        "part_masks": part_masks(tgt, height, width),
    }
