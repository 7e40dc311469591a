"""Part masks ``B_j`` of Eq. 1 in numpy: the float32 formulas of ``spt_tf.geometry``.

Joint presence, the body scale, and the masks of the 10 rigid parts of the deformable skip
(torso: the whole image; head: a square; limbs: rectangles), evaluated at any pixels (a
window of a map, or flat lists of pixels) without TensorFlow, so that the search's worker
processes never load it. The tests check them equal to :func:`spt_tf.geometry.part_masks`
and :func:`spt_tf.geometry.body_scale`.
"""

from __future__ import annotations

import numpy as np

from spt_tf import skeleton

NUM_PARTS = skeleton.NUM_PARTS
_RSHO, _LSHO = skeleton.KP["Rsho"], skeleton.KP["Lsho"]
_RHIP, _LHIP = skeleton.KP["Rhip"], skeleton.KP["Lhip"]
_TORSO = skeleton.TORSO  # Rhip, Lhip, Lsho, Rsho
_HEAD = skeleton.HEAD  # nose, Leye, Reye, Lear, Rear
# (from, to, inc_to) of each limb's mask: skeleton.LIMB_PARTS also holds the inc_to of the
# limb's transform fit, which the masks do not use.
_LIMBS = tuple((fr, to, inc_mask) for fr, to, _, inc_mask in skeleton.LIMB_PARTS)
_INC_FROM = skeleton.INC_FROM
# Mask sizes in body-scale units: geometry.LIMB_HALF_WIDTH and geometry.HEAD_HALF_SIDE,
# repeated here because spt_tf.geometry imports TensorFlow (the tests compare the masks).
_LIMB_HALF_WIDTH = 0.2
_HEAD_HALF_SIDE = 0.4
_NONE = 255  # label sentinel: outside the image or outside the source part mask
_F = np.float32


def present(keypoints: np.ndarray) -> np.ndarray:
    """[..., 18, 2] -> [..., 18] bool: the joint has no ``-1`` coordinate."""
    return np.all(np.asarray(keypoints) != -1, axis=-1)


def body_scale(keypoints: np.ndarray) -> np.ndarray:
    """Shoulder-hip distance averaged over the sides present (``geometry.body_scale``); [...].

    0 where neither side has both joints.
    """
    kp = np.asarray(keypoints, _F)
    vis = present(kp)
    total = np.zeros(kp.shape[:-2], _F)
    n = np.zeros(kp.shape[:-2], _F)
    for hip, sho in ((_RHIP, _RSHO), (_LHIP, _LSHO)):
        d = kp[..., hip, :] - kp[..., sho, :]
        ok = vis[..., hip] & vis[..., sho]
        total = total + np.where(ok, d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1], _F(0))
        n = n + ok.astype(_F)
    return np.where(n > 0, np.sqrt(total / np.maximum(n, _F(1))), _F(0)).astype(_F)


def part_presence(keypoints: np.ndarray) -> np.ndarray:
    """[..., 18, 2] -> [..., 10] bool: the part has the joints its mask/transform needs.

    Torso: the 4 torso joints; head: any of nose/eyes/ears (what its transform needs; its
    mask also needs a body scale, :func:`_head_square`); limbs: both end joints and a body
    scale. (The torso *mask* of the deformable skip is all ones regardless.)
    """
    kp = np.asarray(keypoints, _F)
    vis = present(kp)
    st_ok = body_scale(kp) > 0
    out = [np.all(vis[..., list(_TORSO)], -1), np.any(vis[..., list(_HEAD)], -1)]
    for fr, to, _ in _LIMBS:
        out.append(vis[..., fr] & vis[..., to] & st_ok)
    return np.stack(out, -1)


def _limb_rect(p_fr, p_to, st, inc):
    """Mask rectangle of a limb: (p0, p1, half width), as ``geometry._limb_polygon``."""
    fr2 = p_fr + (p_fr - p_to) * _F(_INC_FROM)
    to2 = p_to + (p_to - fr2) * _F(inc)
    return fr2, to2, _F(_LIMB_HALF_WIDTH) * st


def _head_square(kp):
    """(centre (y, x), half side, has a mask) of the head mask of one pose.

    The mask exists when a head joint is present and the pose has a body scale: without a
    hip-shoulder pair the square has side 0 and is empty, as in ``geometry.part_masks``
    (not the pixels that happen to sit exactly on the centre).
    """
    vis = present(kp)
    hv = vis[list(_HEAD)].astype(_F)
    n = hv.sum()
    center = (kp[list(_HEAD)] * hv[:, None]).sum(0) / max(n, _F(1))
    st = body_scale(kp)
    return center.astype(_F), _F(_HEAD_HALF_SIDE) * st, bool((n > 0) & (st > 0))


def _segment_rect(yy, xx, p0, p1, half_width):
    """``geometry._segment_rect`` in float32 numpy: pixels within the rectangle p0 -> p1."""
    d = p1 - p0
    length2 = d[0] * d[0] + d[1] * d[1]
    py = yy - p0[0]
    px = xx - p0[1]
    safe = max(length2, _F(1e-12))
    t = (py * d[0] + px * d[1]) / safe
    perp2 = (py * d[1] - px * d[0]) ** 2 / safe
    return (t >= 0) & (t <= 1) & (perp2 <= half_width * half_width) & (length2 > 0)


def part_mask_at(keypoints: np.ndarray, part: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Part mask ``B_part`` of one pose evaluated at pixel coordinates ``(yy, xx)``.

    The same float32 formulas as :func:`spt_tf.geometry.part_masks` (tested equal), so a
    window of a map can be evaluated without the whole map.

    Args:
      keypoints: [18, 2] (y, x), -1 missing.
      part: 0..9 (``geometry.PART_NAMES`` order).
      yy, xx: float32 pixel coordinates, any equal shapes.

    Returns:
      bool array of the shape of ``yy``.
    """
    kp = np.asarray(keypoints, _F)
    if part == 0:
        return np.ones(np.shape(yy), bool)
    if part == 1:
        center, half, ok = _head_square(kp)
        if not ok:
            return np.zeros(np.shape(yy), bool)
        return (np.abs(yy - center[0]) <= half) & (np.abs(xx - center[1]) <= half)
    fr, to, inc = _LIMBS[part - 2]
    st = body_scale(kp)
    vis = present(kp)
    if not (vis[fr] and vis[to] and st > 0):
        return np.zeros(np.shape(yy), bool)
    p0, p1, hw = _limb_rect(kp[fr], kp[to], st, inc)
    return _segment_rect(yy, xx, p0, p1, hw)


def part_masks(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """[18, 2] -> [10, height, width] bool part masks (numpy twin of ``geometry.part_masks``)."""
    yy, xx = np.meshgrid(np.arange(height, dtype=_F), np.arange(width, dtype=_F), indexing="ij")
    return np.stack([part_mask_at(keypoints, j, yy, xx) for j in range(NUM_PARTS)])


def _head_squares(kp: np.ndarray):
    """Vectorised :func:`_head_square`: centres [K, 2], half sides [K], has a mask [K]."""
    vis = present(kp)
    hv = vis[:, list(_HEAD)].astype(_F)
    n = hv.sum(1)
    center = (kp[:, list(_HEAD)] * hv[..., None]).sum(1) / np.maximum(n, _F(1))[:, None]
    st = body_scale(kp)
    return center.astype(_F), _F(_HEAD_HALF_SIDE) * st, (n > 0) & (st > 0)


def _limb_params(kp: np.ndarray, part: int):
    """Mask rectangle of a limb in K poses: p0 [K, 2], d [K, 2], length2 [K], half width^2 [K]."""
    fr, to, inc = _LIMBS[part - 2]
    p0, p1, hw = _limb_rect(kp[:, fr], kp[:, to], body_scale(kp)[:, None], inc)
    d = p1 - p0
    return p0, d, d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1], hw[:, 0] * hw[:, 0]


def _flat_part_mask(params, part, cand, yy, xx):
    """Candidate part masks at flat pixels (float32 formulas of ``geometry.part_masks``).

    Args:
      params: from :func:`_head_squares` (head) or :func:`_limb_params` (limbs).
      part: 1..9; cand: [P] candidate index per pixel; yy, xx: [P] float32.
    """
    if part == 1:
        # The head's transform needs no body scale, so a pose without one can still be
        # sampled here; its mask is empty all the same (ok).
        c, half, ok = params
        hc = half[cand]
        return (np.abs(yy - c[cand, 0]) <= hc) & (np.abs(xx - c[cand, 1]) <= hc) & ok[cand]
    p0, d, length2, h2 = params
    safe = np.maximum(length2, _F(1e-12))[cand]
    py = yy - p0[cand, 0]
    px = xx - p0[cand, 1]
    dy, dx = d[cand, 0], d[cand, 1]
    t = (py * dy + px * dx) / safe
    perp2 = (py * dx - px * dy) ** 2 / safe
    return (t >= 0) & (t <= 1) & (perp2 <= h2[cand]) & (length2[cand] > 0)
