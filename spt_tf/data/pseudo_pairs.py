"""Pseudo-label search of SPT Eq. 1: for each training map, the best map in another pose.

For a source map ``S_ps`` (keypoints ``p_s``) the pseudo target is the map ``S_p`` of another
training image, in a different pose and of the same clothing type, minimising (Eq. 1)::

    cost(S_ps, S_p) = sum_j || B_j(p) * S_p - f_j(B_j(p_s) * S_ps) ||^2       j = 1..10

over the 10 rigid parts of the deformable skip (``spt_tf.geometry.PART_NAMES``): ``B_j`` the
part masks of :func:`spt_tf.geometry.part_masks`, ``f_j`` the bilinear warp
(:func:`spt_tf.geometry.warp`) by the part's affine :func:`spt_tf.geometry.part_transforms`
``(p_s, p)``, maps compared one-hot (10 channels). ``docs/pseudo_pairs.md`` explains every
decision; in short:

* **Exact cost** (:func:`eq1_costs`): numpy, on label maps (the one-hot algebra written per
  pixel with the 4 bilinear neighbours), each part evaluated only on the window where either
  term can be non-zero. It equals the one-hot TF reference :func:`eq1_costs_reference` (built
  from ``spt_tf.geometry`` verbatim) to float precision; the tests check this.
* **Missing parts**: the literal Eq. 1 costs nothing for a part the *candidate* lacks (its
  mask is empty and its transform samples nothing), so it would favour candidates with few
  visible limbs. With ``missing_part_penalty`` (default) such a part costs the area of the
  source's part mask, the mirror of what the literal formula already charges when the
  *source* lacks it.
* **Candidates** in three stages: (1) every part's content resampled into a canonical frame
  at low resolution (:class:`Descriptors`), weighted so that an approximate Eq. 1 is one
  matrix product ``U[s] @ V[c]``, keeps ``prefilter_k`` candidates per source; (2) the exact
  cost on the maps reduced to a height of about ``coarse_size`` (mode pooling) keeps
  ``top_k``; (3) the exact cost at the maps' resolution chooses.
* **Admissible candidates**: another image, same clothing type (:mod:`spt_tf.data.clothing`),
  normalised pose distance (:func:`pose_distances`) of at least ``min_pose_distance``, and,
  when identities are given and ``exclude_same_identity``, another identity.

Command line (writes ``from,to,cost`` rows; resumable; ``--workers`` processes)::

    python -m spt_tf.data.pseudo_pairs --config configs/synthetic.py
    python -m spt_tf.data.pseudo_pairs --data_dir D --annotations A.csv --parsing_dir P \\
        --out pseudo-pairs.csv --workers 2 [--top_k 8 --prefilter_k 32 --coarse_size 64]
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

from spt_tf.data import clothing as clothing_lib
from spt_tf.data import formats

_log = logging.getLogger(__name__)

# Keypoint indices (COCO-18, as spt_tf.geometry; repeated here so that worker processes do
# not import TensorFlow).
_RSHO, _LSHO, _RHIP, _LHIP = 2, 5, 8, 11
_TORSO = (8, 11, 5, 2)  # Rhip, Lhip, Lsho, Rsho: geometry.TORSO
_HEAD = (0, 14, 15, 16, 17)  # nose, Leye, Reye, Lear, Rear: geometry.HEAD
# (from, to, inc_to of the mask): geometry.LIMB_PARTS.
_LIMBS = ((8, 9, 0.1), (11, 12, 0.1), (9, 10, 0.5), (12, 13, 0.5),
          (2, 3, 0.1), (5, 6, 0.1), (3, 4, 0.5), (6, 7, 0.5))  # fmt: skip
_INC_FROM = 0.1
_LIMB_HALF_WIDTH = 0.2
_HEAD_HALF_SIDE = 0.4
NUM_PARTS = 10
NUM_LABELS = 10
_NONE = 255  # label sentinel: outside the image or outside the source part mask
_F = np.float32
_TORSO_SUB = 3  # nearest samples per torso descriptor cell side


# ---------------------------------------------------------------- pose helpers (numpy)


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

    Torso: the 4 torso joints; head: any of nose/eyes/ears; limbs: both end joints and a body
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
    """(centre (y, x), half side, any head joint) of the head mask of one pose."""
    vis = present(kp)
    hv = vis[list(_HEAD)].astype(_F)
    n = hv.sum()
    center = (kp[list(_HEAD)] * hv[:, None]).sum(0) / max(n, _F(1))
    return center.astype(_F), _F(_HEAD_HALF_SIDE) * body_scale(kp), n > 0


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
    """Vectorised :func:`_head_square`: centres [K, 2], half sides [K], ok [K]."""
    vis = present(kp)
    hv = vis[:, list(_HEAD)].astype(_F)
    n = hv.sum(1)
    center = (kp[:, list(_HEAD)] * hv[..., None]).sum(1) / np.maximum(n, _F(1))[:, None]
    return center.astype(_F), _F(_HEAD_HALF_SIDE) * body_scale(kp), n > 0


# ---------------------------------------------------------------- the exact cost


_TRANSFORMS_FN = None


def transforms_for(source_keypoints: np.ndarray, candidate_keypoints: np.ndarray,
                   batch: int = 8192) -> np.ndarray:
    """``geometry.part_transforms(source, candidate)`` in batches; [P, 10, 8] float32.

    Maps a pixel of the candidate pose to the source pixel it samples (output -> input).

    Args:
      source_keypoints, candidate_keypoints: [P, 18, 2].
      batch: pairs per TensorFlow call.
    """
    global _TRANSFORMS_FN
    if _TRANSFORMS_FN is None:
        import tensorflow as tf  # TensorFlow only where transforms are made

        from spt_tf import geometry

        spec = tf.TensorSpec([None, 18, 2], tf.float32)
        _TRANSFORMS_FN = tf.function(geometry.part_transforms, input_signature=[spec, spec])
    src = np.asarray(source_keypoints, _F).reshape(-1, 18, 2)
    cand = np.asarray(candidate_keypoints, _F).reshape(-1, 18, 2)
    if len(src) != len(cand):
        raise ValueError(f"{len(src)} source poses for {len(cand)} candidate poses")
    out = np.empty((len(src), NUM_PARTS, 8), _F)
    for i in range(0, len(src), batch):
        out[i:i + batch] = _TRANSFORMS_FN(src[i:i + batch], cand[i:i + batch]).numpy()
    return out


def _fg_hull(labels: np.ndarray, margin: float) -> np.ndarray | None:
    """Convex polygon [V, 2] (y, x) holding every non-zero pixel grown by ``margin``; or None.

    The hull is simplified (at most 1 px inward) and then grown by ``margin + 1`` (Minkowski
    sum with a square), so it stays conservative.
    """
    import cv2

    fg = labels != 0
    rows = np.nonzero(fg.any(1))[0]
    if not len(rows):
        return None
    # The hull of the foreground is the hull of each row's first and last foreground pixel.
    sub = fg[rows]
    first = sub.argmax(1)
    last = fg.shape[1] - 1 - sub[:, ::-1].argmax(1)
    pts = np.concatenate([np.stack([first, rows], 1), np.stack([last, rows], 1)]).astype(np.int32)
    hull = cv2.approxPolyDP(cv2.convexHull(pts[:, None]), 1.0, True)[:, 0].astype(np.float32)
    m = margin + 1.0
    corners = np.array([[-m, -m], [-m, m], [m, m], [m, -m]], np.float32)
    grown = cv2.convexHull((hull[:, None, :] + corners[None]).reshape(-1, 1, 2))[:, 0]
    return grown[:, ::-1].astype(np.float64)


def _pad_polygons(polys: Sequence[np.ndarray], size: int = 0) -> np.ndarray:
    """[V_i, 2] polygons -> [n, max(V, size), 2], each padded by repeating its last vertex."""
    v = max([size] + [len(p) for p in polys])
    return np.stack([np.concatenate([p, np.repeat(p[-1:], v - len(p), 0)]) for p in polys])


def _quad_spans(quads: np.ndarray, ok: np.ndarray, h: int, w: int):
    """Per-row pixel spans of the union of convex polygons, for many pairs at once.

    Each row of a convex polygon crosses two of its edges; every edge emits its crossing x
    on the rows it spans, and the spans are the per-(pair, row) minima and maxima.

    Args:
      quads: [P, Q, V, 2] (y, x) vertices (in order around each polygon), Q per pair.
      ok: [P, Q] bool, polygons to use.
      h, w: map size (spans are clipped to it).

    Returns:
      (pair [R], y [R], x0 [R], x1 [R]) int64 row runs ``x0 <= x < x1``, covering every
      pixel inside any of a pair's polygons (a superset: the per-row hull of their spans).
    """
    p, q, nv = quads.shape[:3]
    a = quads.reshape(p * q * nv, 2)
    b = np.roll(quads, -1, axis=2).reshape(p * q * nv, 2)
    use = np.repeat(ok.reshape(-1), nv)
    ylo = np.clip(np.ceil(np.minimum(a[:, 0], b[:, 0])), 0, h)
    yhi = np.clip(np.floor(np.maximum(a[:, 0], b[:, 0])), -1, h - 1)
    count = np.where(use & np.isfinite(ylo) & np.isfinite(yhi), yhi - ylo + 1, 0)
    count = np.maximum(count, 0).astype(np.int64)
    edge = np.repeat(np.arange(len(a)), count)
    y = ylo[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count))
    ay, ax, by, bx = a[edge, 0], a[edge, 1], b[edge, 0], b[edge, 1]
    dy = by - ay
    flat = dy == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = ax + (y - ay) / np.where(flat, 1.0, dy) * (bx - ax)
    # A horizontal edge on the row spans both of its ends.
    lo = np.where(flat, np.minimum(ax, bx), xc)
    hi = np.where(flat, np.maximum(ax, bx), xc)
    key = (edge // (q * nv)) * h + y.astype(np.int64)
    rlo = np.full(p * h, np.inf)
    rhi = np.full(p * h, -np.inf)
    np.minimum.at(rlo, key, lo)
    np.maximum.at(rhi, key, hi)
    rows = np.nonzero(np.isfinite(rlo))[0]
    x0 = np.clip(np.ceil(rlo[rows]), 0, w).astype(np.int64)
    x1 = np.clip(np.floor(rhi[rows]) + 1, 0, w).astype(np.int64)
    keep = x1 > x0
    rows = rows[keep]
    return rows // h, rows % h, x0[keep], x1[keep]


def _grow_quad(quad: np.ndarray, margin: float) -> np.ndarray:
    """Moves each corner of [..., 4, 2] parallelograms ``margin`` px away along both sides."""
    c = quad.mean(-2, keepdims=True)
    out = quad.copy()
    for e in (1, -1):
        side = np.roll(quad, -e, axis=-2) - quad
        norm = np.sqrt((side ** 2).sum(-1, keepdims=True))
        out = out - side / np.maximum(norm, 1e-9) * margin
    # Degenerate quads (zero sides) grow around the centre.
    return np.where(np.isfinite(out), out, c)


def _box_quad(box: np.ndarray) -> np.ndarray:
    """[..., 4] (y0, y1, x0, x1) -> [..., 4, 2] corners."""
    y0, y1, x0, x1 = (box[..., i] for i in range(4))
    return np.stack([np.stack([y0, x0], -1), np.stack([y0, x1], -1), np.stack([y1, x1], -1),
                     np.stack([y1, x0], -1)], -2)


def _part_quads(kp: np.ndarray, part: int) -> tuple[np.ndarray, np.ndarray]:
    """Corners [K, 4, 2] (y, x) of the part mask of K poses (head square, limb rectangle); ok."""
    if part == 1:
        c, half, ok = _head_squares(kp)
        box = np.stack([c[:, 0] - half, c[:, 0] + half, c[:, 1] - half, c[:, 1] + half], 1)
        return _box_quad(box.astype(np.float64)), ok
    fr, to, inc = _LIMBS[part - 2]
    p0, p1, hw = _limb_rect(kp[:, fr], kp[:, to], body_scale(kp)[:, None], inc)
    d = (p1 - p0).astype(np.float64)
    norm = np.maximum(np.sqrt((d * d).sum(-1, keepdims=True)), 1e-9)
    nrm = np.stack([-d[:, 1], d[:, 0]], -1) / norm * hw.astype(np.float64)
    p0 = p0.astype(np.float64)
    p1 = p1.astype(np.float64)
    quad = np.stack([p0 + nrm, p1 + nrm, p1 - nrm, p0 - nrm], 1)
    return quad, part_presence(kp)[:, part]


def _preimage(quads: np.ndarray, transforms: np.ndarray):
    """Pre-images [P, 4, 2] of source quads under candidate -> source transforms; ok [P]."""
    t = transforms.astype(np.float64)
    a0, a1, a2, b0, b1, b2 = (t[:, i, None] for i in range(6))
    det = a0 * b1 - a1 * b0
    ok = (np.abs(det[:, 0]) > 1e-12) & (np.abs(a2[:, 0]) < 1e4) & (np.abs(b2[:, 0]) < 1e4)
    det = np.where(np.abs(det) > 1e-12, det, 1.0)
    # Solve [a0 a1; b0 b1] (x, y) = (sx - a2, sy - b2).
    u = quads[..., 1] - a2
    v = quads[..., 0] - b2
    return np.stack([(-b0 * u + a0 * v) / det, (b1 * u - a1 * v) / det], -1), ok


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
        c, half, _ = params
        hc = half[cand]
        return (np.abs(yy - c[cand, 0]) <= hc) & (np.abs(xx - c[cand, 1]) <= hc)
    p0, d, length2, h2 = params
    safe = np.maximum(length2, _F(1e-12))[cand]
    py = yy - p0[cand, 0]
    px = xx - p0[cand, 1]
    dy, dx = d[cand, 0], d[cand, 1]
    t = (py * dy + px * dx) / safe
    perp2 = (py * dx - px * dy) ** 2 / safe
    return (t >= 0) & (t <= 1) & (perp2 <= h2[cand]) & (length2[cand] > 0)


def _flat_cost(padded, uniform, plane, transforms, cand_flat, hw_size, runs, cand_index,
               cand_mask_fn, n_pairs):
    """Per-pair sums of ``||B * onehot(L) - bilinear_warp(masked source)||^2`` over pixel runs.

    Args:
      padded, uniform: [S, 10, H + 5, W + 5] source part labels / uniform-block flags
        (:func:`_padded_part_labels`), read through ``plane``.
      plane: [n_pairs] offset of each pair's source part plane in ``padded.ravel()``.
      transforms: [n_pairs, 8] candidate -> source.
      cand_flat: [C * H * W] uint8 candidate labels; cand_index: [n_pairs] candidate of a pair.
      hw_size: (H, W).
      runs: (pair [R], y [R], x0 [R], length [R]) row runs of pixels to evaluate.
      cand_mask_fn: None (torso: mask of ones) or fn(cand [P], yy, xx) -> bool [P].
      n_pairs: number of pairs (length of the output).

    Returns:
      [n_pairs] float64.
    """
    h, w = hw_size
    wp = padded.shape[-1]
    t = transforms.astype(_F)
    row_pair, row_y, row_x0, row_w = runs
    ry = row_y.astype(_F)
    starts = np.cumsum(row_w) - row_w
    local = np.arange(int(row_w.sum())) - np.repeat(starts, row_w)
    x = np.repeat(row_x0, row_w) + local
    # geometry._apply / sample_bilinear in float32, the per-row part (a1 * y + a2) once per
    # row (a rounding order that differs from TF's by an ulp at most).
    xf = x.astype(_F)
    sx = np.repeat(t[row_pair, 0], row_w) * xf + np.repeat(t[row_pair, 1] * ry + t[row_pair, 2],
                                                           row_w)
    sy = np.repeat(t[row_pair, 3], row_w) * xf + np.repeat(t[row_pair, 4] * ry + t[row_pair, 5],
                                                           row_w)
    # Shifted by the 2-px border and clipped into it: far-away samples land on blocks of
    # border values only (uniform), so the truncation below is the floor wherever it matters.
    sxc = np.clip(sx, _F(-2), _F(w)) + _F(2)
    syc = np.clip(sy, _F(-2), _F(h)) + _F(2)
    xi = sxc.astype(np.int64)
    yi = syc.astype(np.int64)
    base = np.repeat(plane[row_pair], row_w) + yi * wp + xi
    row_lin = (cand_index[row_pair] * h + row_y) * w + row_x0
    lab = cand_flat[np.repeat(row_lin, row_w) + local]
    flat = padded.reshape(-1)
    l00 = flat[base]
    uni = uniform.reshape(-1)[base]
    # A uniform 2x2 block: the warped vector is e_l (weights sum to 1), or 0 for _NONE.
    valid = l00 != _NONE
    if cand_mask_fn is None:
        bm = None
        px = np.where(valid, np.where(l00 == lab, _F(0), _F(2)), _F(1))
    else:
        bm = cand_mask_fn(np.repeat(cand_index[row_pair], row_w), np.repeat(ry, row_w),
                          xf).astype(_F)
        px = np.where(valid, bm - _F(2) * bm * (l00 == lab) + _F(1), bm)
    sel = np.nonzero(~uni)[0]
    if len(sel):
        # Non-uniform blocks are never clipped, so these are sx - floor(sx), sy - floor(sy).
        fx = sxc[sel] - xi[sel]
        fy = syc[sel] - yi[sel]
        bs = base[sel]
        labs = (flat[bs], flat[bs + 1], flat[bs + wp], flat[bs + wp + 1])
        wts = ((1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx)
        wts = [np.where(lb != _NONE, wt, _F(0)) for lb, wt in zip(labs, wts)]
        # ||w||^2 of the warped one-hot vector sum_k w_k e_{l_k}.
        self_sq = wts[0] * wts[0] + wts[1] * wts[1] + wts[2] * wts[2] + wts[3] * wts[3]
        for a in range(4):
            for b in range(a + 1, 4):
                self_sq = self_sq + np.where(labs[a] == labs[b], _F(2) * wts[a] * wts[b], _F(0))
        ls = lab[sel]
        match = sum(np.where(lb == ls, wt, _F(0)) for lb, wt in zip(labs, wts))
        if bm is None:
            px[sel] = _F(1) - _F(2) * match + self_sq
        else:
            bsm = bm[sel]
            px[sel] = bsm - _F(2) * bsm * match + self_sq
    # Per-run sums (float32 over at most a row), then per pair in float64.
    return np.bincount(row_pair, weights=np.add.reduceat(px, starts), minlength=n_pairs)


def _uniform_blocks(a: np.ndarray) -> np.ndarray:
    """[h, w] -> [h - 1, w - 1] bool: the 2x2 block with top-left corner here has one value."""
    t = a[:-1, :-1]
    return (t == a[:-1, 1:]) & (t == a[1:, :-1]) & (t == a[1:, 1:])


def _padded_part_labels(labels: np.ndarray, keypoints: np.ndarray, outside_is_background: bool):
    """Source labels per part, padded for clipped bilinear gathers.

    Returns:
      padded [10, H + 5, W + 5] uint8 (part j: labels inside ``B_j``, ``_NONE`` elsewhere;
      a frame 2 px wide on the top/left and 3 px on the bottom/right holding ``_NONE``, or
      background for the torso with ``outside_is_background``);
      uniform [10, H + 5, W + 5] bool (the 2x2 block with top-left corner here has one label);
      ok [10] (the part has a non-empty mask; the torso always);
      areas [10] mask pixel counts.
    """
    h, w = labels.shape
    out = np.full((NUM_PARTS, h + 5, w + 5), _NONE, np.uint8)
    uni = np.ones(out.shape, bool)
    ok = np.zeros(NUM_PARTS, bool)
    areas = np.zeros(NUM_PARTS)
    if outside_is_background:
        out[0] = 0
    out[0, 2:h + 2, 2:w + 2] = labels
    uni[0, :-1, :-1] = _uniform_blocks(out[0])
    ok[0] = True
    areas[0] = h * w
    # Part geometry of this pose once (the float32 formulas of part_mask_at / geometry).
    kp = np.asarray(keypoints, _F)
    vis = present(kp)
    st = body_scale(kp[None])[0]
    center, half, head_ok = _head_square(kp)
    fr = np.array([a for a, _, _ in _LIMBS])
    to = np.array([b for _, b, _ in _LIMBS])
    inc = np.array([[c] for _, _, c in _LIMBS], _F)
    fr2 = kp[fr] + (kp[fr] - kp[to]) * _F(_INC_FROM)
    to2 = kp[to] + (kp[to] - fr2) * inc
    hw = _F(_LIMB_HALF_WIDTH) * st
    limb_ok = vis[fr] & vis[to] & (st > 0)
    for j in range(1, NUM_PARTS):
        if j == 1:
            if not head_ok:
                continue
            b = (center[0] - half, center[0] + half, center[1] - half, center[1] + half)
        else:
            i = j - 2
            if not limb_ok[i]:
                continue
            b = (min(fr2[i, 0], to2[i, 0]) - hw, max(fr2[i, 0], to2[i, 0]) + hw,
                 min(fr2[i, 1], to2[i, 1]) - hw, max(fr2[i, 1], to2[i, 1]) + hw)
        y0, y1 = max(int(np.floor(b[0])) - 1, 0), min(int(np.ceil(b[1])) + 2, h)
        x0, x1 = max(int(np.floor(b[2])) - 1, 0), min(int(np.ceil(b[3])) + 2, w)
        if y1 <= y0 or x1 <= x0:
            continue
        yy = np.arange(y0, y1, dtype=_F)[:, None]
        xx = np.arange(x0, x1, dtype=_F)[None, :]
        if j == 1:
            m = (np.abs(yy - center[0]) <= half) & (np.abs(xx - center[1]) <= half)
        else:
            m = _segment_rect(yy, xx, fr2[i], to2[i], hw)
        if not m.any():
            continue
        out[j, y0 + 2:y1 + 2, x0 + 2:x1 + 2] = np.where(m, labels[y0:y1, x0:x1], _NONE)
        # Blocks touching the window start one pixel above / left of it; all others hold
        # _NONE only (uniform, already set).
        win = out[j, y0 + 1:y1 + 3, x0 + 1:x1 + 3]
        uni[j, y0 + 1:y1 + 2, x0 + 1:x1 + 2] = _uniform_blocks(win)
        ok[j] = True
        areas[j] = m.sum()
    return out, uni, ok, areas


def eq1_costs_pairs(
    source_labels: np.ndarray,
    source_keypoints: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_keypoints: np.ndarray,
    pair_source: np.ndarray,
    pair_candidate: np.ndarray,
    transforms: np.ndarray | None = None,
    missing_part_penalty: bool = True,
    outside_is_background: bool = True,
    pixel_budget: int = 1 << 17,
    per_part: bool = False,
) -> np.ndarray:
    """Exact Eq. 1 costs of many (source, candidate) pairs, vectorised over the pairs.

    Args:
      source_labels: [S, H, W] uint8 labels 0..9; source_keypoints: [S, 18, 2] (y, x)
        pixels of these maps, -1 missing.
      candidate_labels: [C, H, W] uint8; candidate_keypoints: [C, 18, 2].
      pair_source: [P] index into the sources; pair_candidate: [P] index into the candidates.
      transforms: [P, 10, 8] ``geometry.part_transforms(source, candidate)`` of each pair;
        computed (TensorFlow) when None.
      missing_part_penalty: add the source part's mask area for every non-torso part the
        source has and the candidate lacks (see the module docstring).
      outside_is_background: in the torso term (whose mask is the whole image), the world
        outside the source map is background instead of the warp's zero fill, so that
        framing (where the person sits in the image) does not enter the cost.
      pixel_budget: window pixels evaluated per vectorised step (bounds the memory).
      per_part: return the [P, 10] terms of the parts (penalties in their part's column).

    Returns:
      [P] float64 costs (sums of squared one-hot differences; 0 for identical aligned maps).
    """
    src = np.asarray(source_labels, np.uint8)
    s_n, h, w = src.shape
    src_kp = np.asarray(source_keypoints, _F).reshape(s_n, 18, 2)
    cand = np.ascontiguousarray(candidate_labels, np.uint8)
    c_n = len(cand)
    if cand.shape[1:] != (h, w):
        raise ValueError(f"candidate maps are {cand.shape[1:]}, sources {(h, w)}")
    cand_kp = np.asarray(candidate_keypoints, _F).reshape(c_n, 18, 2)
    ps = np.asarray(pair_source, np.int64).reshape(-1)
    pc = np.asarray(pair_candidate, np.int64).reshape(-1)
    n = len(ps)
    if len(pc) != n:
        raise ValueError(f"{n} pair sources for {len(pc)} pair candidates")
    if n == 0:
        return np.zeros((0, NUM_PARTS) if per_part else 0)
    if transforms is None:
        transforms = transforms_for(src_kp[ps], cand_kp[pc])
    transforms = np.asarray(transforms, _F).reshape(n, NUM_PARTS, 8)
    used = np.unique(ps)
    plane_of = np.zeros(s_n, np.int64)
    plane_of[used] = np.arange(len(used))
    prep = [_padded_part_labels(src[s], src_kp[s], outside_is_background) for s in used]
    padded = np.stack([p[0] for p in prep])  # [S', 10, Hp, Wp]
    uniform = np.stack([p[1] for p in prep])
    src_ok = np.stack([p[2] for p in prep])[plane_of[ps]]  # [P, 10]
    src_area = np.stack([p[3] for p in prep])[plane_of[ps]]
    hp, wp = padded.shape[-2:]
    cand_flat = cand.reshape(-1)
    costs = np.zeros((n, NUM_PARTS))
    full = np.array([0.0, h - 1.0, 0.0, w - 1.0])
    for j in range(NUM_PARTS):
        plane = (plane_of[ps] * NUM_PARTS + j) * (hp * wp)
        # Where the cost can be non-zero: the candidate's part (torso: foreground, or all)
        # and the pre-image of the source's part grown by the bilinear footprint.
        if j == 0:
            # Torso: the foreground hulls (the rest is background against background).
            if outside_is_background:
                ch = [_fg_hull(c, 1.0) for c in cand]
                sh = [_fg_hull(src[s], 1.5) for s in range(s_n)]
            else:
                ch = [None] * c_n
                sh = [None] * s_n
            whole = _box_quad(full)
            cok = np.array([c is not None or not outside_is_background for c in ch])
            ch = [c if c is not None else whole for c in ch]
            sh = [c if c is not None else whole for c in sh]
            v = max(len(c) for c in ch + sh)
            cq = _pad_polygons(ch, v)
            sq = _pad_polygons(sh, v)
            pre, pre_ok = _preimage(sq[ps], transforms[:, j])
            cq = cq[pc]
            mask_fn = None
        else:
            cq, cok = _part_quads(cand_kp, j)
            sq = _part_quads(src_kp, j)[0][ps]
            params = _head_squares(cand_kp) if j == 1 else _limb_params(cand_kp, j)

            def mask_fn(c, yy, xx, params=params, j=j):
                return _flat_part_mask(params, j, c, yy, xx)
            pre, pre_ok = _preimage(_grow_quad(sq, 1.5), transforms[:, j])
            cq = _grow_quad(cq[pc], 1.0)
        quads = np.stack([cq, pre], 1)
        qok = np.stack([cok[pc], pre_ok & src_ok[:, j]], 1)
        rp, ry, rx0, rx1 = _quad_spans(quads, qok, h, w)
        npx = np.cumsum(rx1 - rx0)
        cuts = np.searchsorted(npx, np.arange(pixel_budget, npx[-1] if len(npx) else 0,
                                              pixel_budget))
        for r in np.split(np.arange(len(npx)), cuts):
            if len(r):
                part_runs = (rp[r], ry[r], rx0[r], rx1[r] - rx0[r])
                costs[:, j] += _flat_cost(padded, uniform, plane, transforms[:, j], cand_flat,
                                          (h, w), part_runs, pc, mask_fn, n)
    if missing_part_penalty:
        cand_has = part_presence(cand_kp)[pc][:, 1:]
        costs[:, 1:] += (src_ok[:, 1:] & ~cand_has) * src_area[:, 1:]
    return costs if per_part else costs.sum(-1)


def eq1_costs(
    source_labels: np.ndarray,
    source_keypoints: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_keypoints: np.ndarray,
    transforms: np.ndarray | None = None,
    missing_part_penalty: bool = True,
    outside_is_background: bool = True,
) -> np.ndarray:
    """Exact Eq. 1 cost of one source against K candidates (:func:`eq1_costs_pairs`).

    Args:
      source_labels: [H, W] uint8; source_keypoints: [18, 2].
      candidate_labels: [K, H, W] uint8; candidate_keypoints: [K, 18, 2].
      transforms: [K, 10, 8] ``geometry.part_transforms(source, candidate)`` or None.
      missing_part_penalty, outside_is_background: see :func:`eq1_costs_pairs`.

    Returns:
      [K] float64.
    """
    cand = np.asarray(candidate_labels, np.uint8)
    k = len(cand)
    return eq1_costs_pairs(np.asarray(source_labels)[None], np.asarray(source_keypoints)[None],
                           cand, candidate_keypoints, np.zeros(k, np.int64), np.arange(k),
                           transforms, missing_part_penalty, outside_is_background)


_REFERENCE_FN = None


def _reference_fn():
    """The one-hot Eq. 1 of :func:`eq1_costs_reference` (TensorFlow, imported on first use)."""
    global _REFERENCE_FN
    if _REFERENCE_FN is None:
        import tensorflow as tf

        from spt_tf import geometry

        def fn(src, src_kp, cand, cand_kp, outside_is_background):
            src = tf.convert_to_tensor(src)
            cand = tf.convert_to_tensor(cand)
            b, h, w = tf.shape(src)[0], tf.shape(src)[1], tf.shape(src)[2]
            s1h = geometry.one_hot_parsing(src, NUM_LABELS)
            c1h = geometry.one_hot_parsing(cand, NUM_LABELS)
            hs, ws = src.shape[1], src.shape[2]
            bs = geometry.part_masks(src_kp, hs, ws)  # [B, 10, H, W]
            bc = geometry.part_masks(cand_kp, hs, ws)
            t = geometry.part_transforms(src_kp, cand_kp)  # [B, 10, 8]
            masked = bs[..., None] * s1h[:, None]  # [B, 10, H, W, L]
            warped = geometry.warp(tf.reshape(masked, [b * NUM_PARTS, h, w, NUM_LABELS]),
                                   tf.reshape(t, [b * NUM_PARTS, 8]))
            warped = tf.reshape(warped, [b, NUM_PARTS, h, w, NUM_LABELS])
            # Background where the torso warp samples outside the source (1 - warp of ones).
            inside = geometry.warp(tf.ones([b, h, w, 1]), t[:, 0])
            fill = (1.0 - inside) * tf.one_hot(0, NUM_LABELS) * tf.cast(outside_is_background,
                                                                        tf.float32)
            warped = tf.concat([warped[:, :1] + fill[:, None], warped[:, 1:]], 1)
            diff = bc[..., None] * c1h[:, None] - warped
            return tf.reduce_sum(tf.cast(diff, tf.float64) ** 2, axis=[1, 2, 3, 4]), bs

        # Eager: tracing these ops costs more than the few small batches it serves.
        _REFERENCE_FN = fn
    return _REFERENCE_FN


def eq1_costs_reference(
    source_labels: np.ndarray,
    source_keypoints: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_keypoints: np.ndarray,
    missing_part_penalty: bool = True,
    outside_is_background: bool = True,
) -> np.ndarray:
    """Eq. 1 written literally with ``spt_tf.geometry`` on one-hot maps (TensorFlow).

    The independent reference of :func:`eq1_costs_pairs` (tests, validation):
    ``geometry.part_masks`` for ``B_j``, ``geometry.warp`` by ``geometry.part_transforms``
    for ``f_j``, 10-channel one-hot maps. O(B * 10 * H * W * 10) memory: small batches only.

    Args:
      source_labels: [B, H, W] uint8; source_keypoints: [B, 18, 2].
      candidate_labels: [B, H, W] uint8; candidate_keypoints: [B, 18, 2].
      missing_part_penalty, outside_is_background: as :func:`eq1_costs_pairs`.

    Returns:
      [B] float64.
    """
    src_kp = np.asarray(source_keypoints, _F)
    cand_kp = np.asarray(candidate_keypoints, _F)
    cost, bs = _reference_fn()(np.asarray(source_labels, np.uint8), src_kp,
                               np.asarray(candidate_labels, np.uint8), cand_kp,
                               bool(outside_is_background))
    cost = cost.numpy()
    if missing_part_penalty:
        bs_np = bs.numpy() > 0
        src_has = part_presence(src_kp)[:, 1:] & bs_np[:, 1:].any((2, 3))
        cand_has = part_presence(cand_kp)[:, 1:]
        cost = cost + ((src_has & ~cand_has) * bs_np[:, 1:].sum((2, 3))).sum(-1)
    return cost


# ---------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Knobs of the search (``docs/pseudo_pairs.md`` discusses each).

    Attributes:
      top_k: candidates per source that get the exact cost at the maps' resolution.
      prefilter_k: candidates per source kept by the descriptor pre-filter; with a coarse
        stage they get the exact cost at reduced resolution, and its best ``top_k`` go on.
      coarse_size: the coarse stage works on the maps reduced by the largest power of two
        that keeps their height >= this (mode pooling; :func:`coarse_factor`); no
        reduction possible (or 0): no coarse stage, the pre-filter's ``top_k`` go on.
      min_pose_distance: candidates whose normalised pose distance (:func:`pose_distances`,
        in body-scale units) to the source is below this are "the same pose" and excluded.
      exclude_same_identity: with identities given, never pair two images of one identity.
      missing_part_penalty: see :func:`eq1_costs`.
      outside_is_background: see :func:`eq1_costs`.
      torso_cells: rows of the torso descriptor grid (columns follow the aspect ratio).
      limb_cells: (along, across) cells of each limb descriptor.
      head_cells: side of the head descriptor grid.
      descriptor_rank: (torso, other parts) lengths the descriptor blocks are projected to
        (principal directions); 0 keeps a block whole.
      block: sources per pre-filter matrix product.
      clothing_vote: when the clothing types are computed from the maps and identities are
        known, each identity's type is the majority of its images' (:func:`vote_clothing`):
        one person wears one outfit, and the views that hide a sleeve are outvoted.
    """

    top_k: int = 8
    prefilter_k: int = 32
    coarse_size: int = 64
    min_pose_distance: float = 0.1
    exclude_same_identity: bool = True
    missing_part_penalty: bool = True
    outside_is_background: bool = True
    torso_cells: int = 24
    limb_cells: tuple[int, int] = (6, 3)
    head_cells: int = 5
    descriptor_rank: tuple[int, int] = (192, 32)
    block: int = 512
    clothing_vote: bool = True

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.prefilter_k < self.top_k:
            raise ValueError(f"prefilter_k ({self.prefilter_k}) must be >= top_k ({self.top_k})")
        if self.coarse_size < 0:
            raise ValueError(f"coarse_size must be >= 0, got {self.coarse_size}")
        if self.min_pose_distance < 0:
            raise ValueError(f"min_pose_distance must be >= 0, got {self.min_pose_distance}")


# ---------------------------------------------------------------- pose distance


def normalized_poses(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints centred on the torso and divided by the body scale.

    Centre: the mean of the visible hips and shoulders (all visible joints when none is).
    Scale: :func:`body_scale`; without a hip-shoulder pair, a third of the visible joints'
    vertical extent (a standing person's torso is about a third of it); 1 if that is 0 too.

    Args:
      keypoints: [N, 18, 2] (y, x), -1 missing.

    Returns:
      (coords [N, 18, 2] float32, 0 at missing joints; visible [N, 18] float32 in {0, 1}).
    """
    kp = np.asarray(keypoints, _F).reshape(-1, 18, 2)
    vis = present(kp)
    torso = np.zeros(18, bool)
    torso[list(_TORSO)] = True
    use = vis & torso[None]
    use = np.where(use.any(1, keepdims=True), use, vis)
    center = (kp * use[..., None]).sum(1) / np.maximum(use.sum(1), 1)[:, None]
    st = body_scale(kp)
    ys = np.where(vis, kp[..., 0], np.nan)
    with np.errstate(all="ignore"):
        extent = np.nan_to_num(np.nanmax(ys, 1) - np.nanmin(ys, 1)) / 3.0
    scale = np.where(st > 0, st, np.where(extent > 0, extent, 1.0)).astype(_F)
    z = (kp - center[:, None]) / scale[:, None, None]
    z = np.where(vis[..., None], z, 0).astype(_F)
    return z, vis.astype(_F)


def pose_distances(za, va, zb, vb, min_common: int = 3) -> np.ndarray:
    """RMS distance of the joints visible in both poses, normalised (matrix products).

    Args:
      za, va: [A, 18, 2], [A, 18] from :func:`normalized_poses`; zb, vb likewise [B, ...].
      min_common: fewer common joints than this give ``inf`` (incomparable: not "the same
        pose").

    Returns:
      [A, B] float32 distances in body-scale units.
    """
    za2 = za.reshape(len(za), -1)
    zb2 = zb.reshape(len(zb), -1)
    na = (za * za).sum(-1)  # [A, 18]
    nb = (zb * zb).sum(-1)
    sq = na @ vb.T + va @ nb.T - 2.0 * (za2 @ zb2.T)
    count = va @ vb.T
    d = np.sqrt(np.maximum(sq, 0) / np.maximum(count, 1))
    return np.where(count >= min_common, d, np.inf).astype(_F)


# ---------------------------------------------------------------- pre-filter descriptors


def _unit_grid(rows: int, cols: int, sub: int) -> np.ndarray:
    """Sample points (u, v) in [0, 1]^2, cell-major: [rows * cols * sub * sub, 2]."""
    cu = (np.arange(rows)[:, None, None, None] + (np.arange(sub)[None, None, :, None] + 0.5)
          / sub) / rows
    cv = (np.arange(cols)[None, :, None, None] + (np.arange(sub)[None, None, None, :] + 0.5)
          / sub) / cols
    u, v = np.broadcast_arrays(cu, cv)
    return np.stack([u.ravel(), v.ravel()], -1).astype(_F)


@dataclasses.dataclass
class Descriptors:
    """Low-resolution canonical part descriptors: approximate Eq. 1 costs ``U @ V.T``.

    Attributes:
      u: [N, D] float32, the image as a source.
      v: [N, D] float32, the image as a candidate.
    """

    u: np.ndarray
    v: np.ndarray

    def costs(self, sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """[len(sources), len(candidates)] approximate costs."""
        return self.u[sources] @ self.v[candidates].T


def _top_directions(x: np.ndarray, rank: int, seed: int = 0) -> np.ndarray:
    """[d, rank] orthonormal top right-singular directions of x [n, d] (randomised SVD).

    A Gaussian sketch refined by one power iteration, then the SVD of the small [n, rank +
    16] product: a full LAPACK SVD of x takes minutes on a shared 2-core machine.
    """
    x = np.asarray(x, _F)
    k = min(rank + 16, x.shape[1])
    omega = np.random.default_rng(seed).standard_normal((x.shape[1], k)).astype(_F)
    q = np.linalg.qr(x.T @ (x @ omega))[0]
    q = np.linalg.qr(x.T @ (x @ q))[0]
    _, _, vt = np.linalg.svd(x @ q, full_matrices=False)
    return np.ascontiguousarray((q @ vt.T)[:, :rank], _F)


def reference_pose(keypoints: np.ndarray) -> np.ndarray:
    """Per-joint median of the poses with a full torso: the torso descriptor's frame; [18, 2]."""
    kp = np.asarray(keypoints, _F)
    full = np.all(present(kp)[:, list(_TORSO)], 1)
    if not full.any():
        raise ValueError("no pose has all four torso joints (hips, shoulders): cannot build "
                         "the torso reference frame")
    sel = kp[full]
    out = np.full((18, 2), -1, _F)
    for j in range(18):
        ok = present(sel[:, j])
        if ok.any():
            out[j] = np.median(sel[ok, j], 0)
    return out


def _part_frames(kp: np.ndarray, ref_frame: np.ndarray | None, torso_affine: np.ndarray | None,
                 part: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine frames [N, 2, 3] mapping (u, v) in [0, 1]^2 to (y, x) image pixels; ok [N]."""
    n = len(kp)
    frames = np.zeros((n, 2, 3), _F)
    if part == 0:
        # ref_frame: (y0, x0, height, width) of the grid region in the reference image;
        # torso_affine [N, 8] maps reference (x, y) to image (x, y).
        y0, x0, hh, ww = ref_frame
        a0, a1, a2, b0, b1, b2 = (torso_affine[:, i] for i in range(6))
        # Image point of reference point (y0 + u hh, x0 + v ww).
        frames[:, 0] = np.stack([b1 * hh, b0 * ww, b0 * x0 + b1 * y0 + b2], -1)
        frames[:, 1] = np.stack([a1 * hh, a0 * ww, a0 * x0 + a1 * y0 + a2], -1)
        ok = part_presence(kp)[:, 0]
        return frames, ok
    if part == 1:
        for i in range(n):
            c, half, ok_i = _head_square(kp[i])
            frames[i] = [[2 * half, 0, c[0] - half], [0, 2 * half, c[1] - half]]
        return frames, part_presence(kp)[:, 1]
    fr, to, inc = _LIMBS[part - 2]
    st = body_scale(kp)
    p0, p1, hw = _limb_rect(kp[:, fr], kp[:, to], st[:, None], inc)
    d = p1 - p0
    norm = np.maximum(np.sqrt((d * d).sum(-1, keepdims=True)), _F(1e-6))
    nrm = np.stack([-d[:, 1], d[:, 0]], -1) / norm  # unit normal (y, x)
    origin = p0 - nrm * hw
    across = 2 * nrm * hw
    frames[:, :, 0] = d
    frames[:, :, 1] = across
    frames[:, :, 2] = origin
    return frames, part_presence(kp)[:, part]


def build_descriptors(
    maps: np.ndarray,
    keypoints: np.ndarray,
    settings: SearchSettings,
    reference: np.ndarray | None = None,
    batch: int = 256,
    progress: bool = False,
) -> Descriptors:
    """Canonical low-resolution part descriptors of every map (the pre-filter's features).

    Each part's content is resampled into a canonical frame (torso: a torso-aligned grid over
    the reference image plus a margin; limbs: the mask rectangle in (along, across) cells;
    head: the mask square), cells averaging a few nearest-neighbour samples of the one-hot
    map. With per-part weights (candidate pixels per cell), the sum over parts of weighted
    squared cell differences, plus the missing-part and missing-torso terms of
    :func:`eq1_costs`, is written as the dot product ``U[s] . V[c]``.

    Args:
      maps: [N, H, W] uint8 labels.
      keypoints: [N, 18, 2].
      settings: cell counts and the cost options.
      reference: [18, 2] torso reference pose; :func:`reference_pose` of ``keypoints`` if None.
      batch: images per vectorised step.
      progress: show a tqdm bar.

    Returns:
      :class:`Descriptors`.
    """
    maps = np.asarray(maps)
    n, h, w = maps.shape
    kp = np.asarray(keypoints, _F)
    if reference is None:
        reference = reference_pose(kp)
    tr = settings.torso_cells
    tc = max(2, int(round(tr * w / h)))
    margin = 0.125
    ref_frame = (-margin * h, -margin * w, (1 + 2 * margin) * h, (1 + 2 * margin) * w)
    # Reference -> image torso affines (geometry.part_transforms(image, reference)[:, 0]).
    torso_affine = transforms_for(kp, np.repeat(reference[None], n, 0))[:, 0]
    lu, lv = settings.limb_cells
    hc = settings.head_cells
    grids = [(tr, tc, _TORSO_SUB), (hc, hc, 2)] + [(lu, lv, 2)] * 8
    units = [_unit_grid(r, c, s) for r, c, s in grids]
    cells = [r * c for r, c, _ in grids]
    fill = [0 if settings.outside_is_background else _NONE] + [_NONE] * 9
    eye = np.concatenate([np.eye(NUM_LABELS, dtype=_F), np.zeros((1, NUM_LABELS), _F)])

    frames, oks = zip(*[_part_frames(kp, ref_frame, torso_affine, j) for j in range(NUM_PARTS)])
    presence = part_presence(kp)
    fg = (maps != 0).reshape(n, -1).sum(1).astype(_F)
    torso_missing_cost = 2.0 * fg if settings.outside_is_background else np.full(n, h * w, _F)

    def blocks(idx):
        """Per part: one-hot cell means [b, cells * L], weights [b], squared norms [b]."""
        b = len(idx)
        bm = np.asarray(maps[idx]).reshape(b, -1)
        out = []
        for j in range(NUM_PARTS):
            fj = frames[j][idx]
            pts = units[j]
            py = fj[:, 0, 0, None] * pts[None, :, 0] + fj[:, 0, 1, None] * pts[None, :, 1] \
                + fj[:, 0, 2, None]
            px = fj[:, 1, 0, None] * pts[None, :, 0] + fj[:, 1, 1, None] * pts[None, :, 1] \
                + fj[:, 1, 2, None]
            yi = np.floor(py + 0.5).astype(np.int64)
            xi = np.floor(px + 0.5).astype(np.int64)
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            lab = np.take_along_axis(bm, np.where(inside, yi * w + xi, 0), 1)
            lab = np.where(inside, lab, fill[j]).astype(np.int64)
            lab = np.where(lab == _NONE, NUM_LABELS, lab)
            onehot = eye[lab].reshape(b, cells[j], -1, NUM_LABELS).mean(2)  # [b, cells, L]
            ok = oks[j][idx]
            flat = (onehot * ok[:, None, None]).reshape(b, -1)
            det = np.abs(fj[:, 0, 0] * fj[:, 1, 1] - fj[:, 0, 1] * fj[:, 1, 0])
            wj = np.where(ok, det / cells[j], 0).astype(_F)
            out.append((flat, wj, (flat * flat).sum(1)))
        return out

    # Projections of each part's cell vectors on their principal directions (uncentred SVD
    # of a spread sample of 1,000 maps): the cross terms D_s . D_c become short dot
    # products; the norms stay exact.
    ranks = [settings.descriptor_rank[0]] + [settings.descriptor_rank[1]] * (NUM_PARTS - 1)
    proj = [None] * NUM_PARTS
    if any(r > 0 for r in ranks):
        sample = np.unique(np.linspace(0, n - 1, min(n, 1000)).astype(np.int64))
        for j, (flat, _, _) in enumerate(blocks(sample)):
            if 0 < ranks[j] < flat.shape[1]:
                proj[j] = _top_directions(flat, ranks[j])
    widths = [c * NUM_LABELS if p is None else p.shape[1] for c, p in zip(cells, proj)]
    dim = sum(widths) + NUM_PARTS + 3 + (NUM_PARTS - 1)
    u_all = np.zeros((n, dim), _F)
    v_all = np.zeros((n, dim), _F)
    it = range(0, n, batch)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="descriptors", unit="batch")
    for s0 in it:
        sl = slice(s0, min(s0 + batch, n))
        b = sl.stop - sl.start
        off = 0
        norms = np.zeros((b, NUM_PARTS), _F)
        weights = np.zeros((b, NUM_PARTS), _F)
        for j, (flat, wj, sq) in enumerate(blocks(np.arange(sl.start, sl.stop))):
            if proj[j] is not None:
                flat = flat @ proj[j]
            u_all[sl, off:off + widths[j]] = flat
            v_all[sl, off:off + widths[j]] = -2.0 * wj[:, None] * flat
            off += widths[j]
            norms[:, j] = sq
            weights[:, j] = wj
        cand_norm = weights * norms
        ok0 = oks[0][sl].astype(_F)
        # Source-side scalars: per-part norms, torso ok, torso missing, 1, penalties.
        u_all[sl, off:off + NUM_PARTS] = norms
        v_all[sl, off:off + NUM_PARTS] = weights
        off += NUM_PARTS
        miss_cost = torso_missing_cost[sl]
        c_torso = np.where(ok0 > 0, cand_norm[:, 0], miss_cost)
        u_all[sl, off] = ok0
        v_all[sl, off] = c_torso
        u_all[sl, off + 1] = 1 - ok0
        v_all[sl, off + 1] = miss_cost
        u_all[sl, off + 2] = 1
        v_all[sl, off + 2] = cand_norm[:, 1:].sum(1)
        off += 3
        if settings.missing_part_penalty:
            area = weights[:, 1:] * np.array(cells[1:], _F)[None]  # part mask areas
            u_all[sl, off:] = presence[sl, 1:] * area
            v_all[sl, off:] = ~presence[sl, 1:]
    return Descriptors(u_all, v_all)


# ---------------------------------------------------------------- search


def _group_ids(types: Sequence) -> np.ndarray:
    """Integer group of each clothing type (equal types, equal ids)."""
    table: dict = {}
    return np.array([table.setdefault(t, len(table)) for t in types], np.int64)


def prefilter(
    desc: Descriptors,
    keypoints: np.ndarray,
    groups: np.ndarray,
    identities: np.ndarray | None,
    settings: SearchSettings,
    progress: bool = False,
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-K admissible candidates of every source by the approximate cost.

    Admissible: same clothing group, not the same image, pose distance >= the threshold,
    and another identity when ``identities`` is given and the settings exclude it.

    Args:
      desc: descriptors of all N maps.
      keypoints: [N, 18, 2].
      groups: [N] clothing group ids.
      identities: [N] identity ids, or None.
      settings: min_pose_distance, exclude_same_identity, block, and ``k``.
      progress: show a tqdm bar.
      k: candidates per source; default ``settings.prefilter_k`` (or ``top_k`` without a
        coarse stage, see :func:`candidates_per_source`).

    Returns:
      (candidates [N, K] int64, -1 padded; approximate costs [N, K] float32, inf padded),
      each row sorted by approximate cost (ties by index).
    """
    n = len(groups)
    if k is None:
        k = settings.prefilter_k
    cand = np.full((n, k), -1, np.int64)
    approx = np.full((n, k), np.inf, _F)
    z, vis = normalized_poses(keypoints)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, desc="pre-filter", unit="map")
    for g in np.unique(groups):
        members = np.nonzero(groups == g)[0]
        for b0 in range(0, len(members), settings.block):
            src = members[b0:b0 + settings.block]
            cost = desc.costs(src, members)
            bad = pose_distances(z[src], vis[src], z[members], vis[members]) < \
                settings.min_pose_distance
            bad |= src[:, None] == members[None, :]
            if identities is not None and settings.exclude_same_identity:
                bad |= identities[src][:, None] == identities[members][None, :]
            cost = np.where(bad, np.inf, cost).astype(_F)
            kk = min(k, len(members))
            part = np.argpartition(cost, kk - 1, axis=1)[:, :kk] if kk < len(members) else \
                np.broadcast_to(np.arange(len(members)), cost.shape)
            pc = np.take_along_axis(cost, part, 1)
            # Sort by (cost, index) for a deterministic order.
            order = np.lexsort((members[part], pc), axis=1)
            part = np.take_along_axis(part, order, 1)
            pc = np.take_along_axis(pc, order, 1)
            idx = np.where(np.isfinite(pc), members[part], -1)
            cand[src, :kk] = idx
            approx[src, :kk] = pc
            if bar is not None:
                bar.update(len(src))
    if bar is not None:
        bar.close()
    return cand, approx


def coarse_factor(height: int, coarse_size: int) -> int:
    """Largest power of two f with ``height // f >= coarse_size`` (1: no coarse stage)."""
    f = 1
    while coarse_size > 0 and height // (2 * f) >= coarse_size:
        f *= 2
    return f


def candidates_per_source(height: int, settings: SearchSettings) -> int:
    """How many candidates the pre-filter keeps: ``prefilter_k`` with a coarse stage."""
    return settings.prefilter_k if coarse_factor(height, settings.coarse_size) > 1 else \
        settings.top_k


def mode_pool(maps: np.ndarray, factor: int, batch: int = 1024) -> np.ndarray:
    """[N, H, W] labels -> [N, H // f, W // f]: the most frequent label of each f x f block.

    Ties go to the lowest label; rows/columns beyond a multiple of ``factor`` are dropped.
    Pixel ``(i, j)`` of the result sits at ``(i f, j f)`` of the input, the
    ``spt_tf.geometry`` convention, so keypoints scale by ``1 / f``.
    """
    n, h, w = maps.shape
    hh, ww = h // factor, w // factor
    out = np.empty((n, hh, ww), np.uint8)
    for i in range(0, n, batch):
        m = np.asarray(maps[i:i + batch])[:, :hh * factor, :ww * factor]
        blocks = m.reshape(len(m), hh, factor, ww, factor).transpose(0, 1, 3, 2, 4)
        blocks = blocks.reshape(len(m), hh, ww, factor * factor)
        counts = np.stack([(blocks == lab).sum(-1) for lab in range(NUM_LABELS)], -1)
        out[i:i + batch] = counts.argmax(-1)
    return out


def _scaled_keypoints(kp: np.ndarray, factor: int) -> np.ndarray:
    return np.where(present(kp)[..., None], kp / factor, kp).astype(_F)


def _scaled_transforms(transforms: np.ndarray, factor: int) -> np.ndarray:
    """Transforms in pixels of a map reduced by ``factor`` (``geometry.scale_transforms``)."""
    t = np.array(transforms, _F, copy=True)
    t[..., 2] /= factor
    t[..., 5] /= factor
    return t


def _table_costs(maps, keypoints, sources, candidates, transforms, settings):
    """Exact costs [S, K] (inf where the candidate is -1)."""
    valid = candidates >= 0
    table = np.full(candidates.shape, np.inf)
    if not valid.any():
        return table
    row, col = np.nonzero(valid)
    used_c, inv_c = np.unique(candidates[row, col], return_inverse=True)
    table[row, col] = eq1_costs_pairs(
        np.asarray(maps[sources]), keypoints[sources], np.asarray(maps[used_c]),
        keypoints[used_c], row, inv_c, transforms[row, col], settings.missing_part_penalty,
        settings.outside_is_background)
    return table


_RERANK_GROUP = 64  # sources per exact-cost call (bounds a worker's memory)


def rerank(
    maps: np.ndarray,
    keypoints: np.ndarray,
    sources: np.ndarray,
    candidates: np.ndarray,
    transforms: np.ndarray,
    settings: SearchSettings,
    coarse_maps: np.ndarray | None = None,
) -> list[tuple[int, int, float]]:
    """Exact Eq. 1 over each source's candidates; the argmin (first on ties).

    With ``coarse_maps`` (the maps reduced by :func:`mode_pool`) and more than ``top_k``
    candidates, all candidates first get the exact cost at the reduced resolution, and the
    best ``top_k`` of them (ties in the given order) the exact cost at full resolution,
    which alone decides.

    Args:
      maps: [N, H, W] uint8 (a memory map is fine: only the rows used are read).
      keypoints: [N, 18, 2].
      sources: [S] indices; candidates: [S, K] indices (-1 padded); transforms
        [S, K, 10, 8] ``part_transforms(source, candidate)`` at full resolution.
      settings: the cost options and ``top_k``.
      coarse_maps: [N, H / f, W / f] or None.

    Returns:
      ``(source, best candidate, cost)`` for the sources with at least one candidate.
    """
    sources = np.asarray(sources, np.int64)
    if len(sources) > _RERANK_GROUP:
        # Sources in groups: the per-source part planes of a group are held at once.
        out = []
        for g in range(0, len(sources), _RERANK_GROUP):
            sl = slice(g, g + _RERANK_GROUP)
            out += rerank(maps, keypoints, sources[sl], candidates[sl], transforms[sl], settings,
                          coarse_maps)
        return out
    candidates = np.asarray(candidates, np.int64)
    transforms = np.asarray(transforms, _F)
    if coarse_maps is not None and candidates.shape[1] > settings.top_k:
        factor = maps.shape[1] // coarse_maps.shape[1]
        coarse = _table_costs(coarse_maps, _scaled_keypoints(keypoints, factor), sources,
                              candidates, _scaled_transforms(transforms, factor), settings)
        keep = np.argsort(coarse, axis=1, kind="stable")[:, :settings.top_k]
        candidates = np.take_along_axis(candidates, keep, 1)
        transforms = np.take_along_axis(transforms, keep[..., None, None], 1)
    table = _table_costs(maps, keypoints, sources, candidates, transforms, settings)
    out = []
    for i, s in enumerate(sources):
        if (candidates[i] >= 0).any():
            best = int(np.argmin(table[i]))
            out.append((int(s), int(candidates[i, best]), float(table[i, best])))
    return out


def _stack_inputs(parsing: Mapping[str, np.ndarray], keypoints: Mapping[str, np.ndarray]):
    names = list(parsing)
    missing = [n for n in names if n not in keypoints]
    if missing:
        raise ValueError(f"no keypoints for {len(missing)} maps, e.g. {missing[0]!r}")
    shapes = {np.shape(parsing[n]) for n in names}
    if len(shapes) != 1:
        raise ValueError(f"parsing maps must share one size, got {sorted(shapes)}")
    maps = np.stack([np.asarray(parsing[n], np.uint8) for n in names])
    if maps.ndim != 3:
        raise ValueError(f"parsing maps must be [H, W], got {maps.shape[1:]}")
    kp = np.stack([np.asarray(keypoints[n], _F) for n in names])
    if kp.shape[1:] != (18, 2):
        raise ValueError(f"keypoints must be [18, 2], got {kp.shape[1:]}")
    return names, maps, kp


def clothing_types(maps: np.ndarray, keypoints: np.ndarray, progress: bool = False) -> list:
    """:func:`spt_tf.data.clothing.clothing_type` of every map."""
    it = range(len(maps))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="clothing", unit="map")
    return [clothing_lib.clothing_type(maps[i], keypoints[i]) for i in it]


def vote_clothing(types: Sequence[tuple], identities: Sequence) -> list[tuple]:
    """Per identity and per component, the majority clothing type of its images.

    ``"unknown"`` does not vote (it stays where an identity has no other evidence); on a tie
    an image keeps its own value when it is among the tied ones, else the first in sorted
    order.

    Args:
      types: [N] tuples such as ``("short", "pants")`` (:func:`clothing.clothing_type`).
      identities: [N] identity of each image.

    Returns:
      [N] tuples.
    """
    if len(types) != len(identities):
        raise ValueError(f"{len(types)} clothing types for {len(identities)} identities")
    members: dict = {}
    for i, ident in enumerate(identities):
        members.setdefault(ident, []).append(i)
    out = [list(t) for t in types]
    for idx in members.values():
        for c in range(len(types[idx[0]])):
            counts = _count(types[i][c] for i in idx if types[i][c] != clothing_lib.UNKNOWN)
            if not counts:
                continue
            top = max(counts.values())
            tied = sorted(v for v, k in counts.items() if k == top)
            for i in idx:
                own = types[i][c]
                out[i][c] = own if own in tied else tied[0]
    return [tuple(t) for t in out]


def _prepare(maps, kp, names, clothing, identities, settings, progress):
    """Groups, identity ids, descriptors and the pre-filter of a stacked set."""
    if clothing is None:
        types = clothing_types(maps, kp, progress)
        if identities is not None and settings.clothing_vote:
            types = vote_clothing(types, [identities[n] for n in names])
    else:
        missing = [n for n in names if n not in clothing]
        if missing:
            raise ValueError(f"no clothing type for {len(missing)} maps, e.g. {missing[0]!r}")
        types = [clothing[n] for n in names]
    groups = _group_ids(types)
    ids = None
    if identities is not None:
        missing = [n for n in names if n not in identities]
        if missing:
            raise ValueError(f"no identity for {len(missing)} maps, e.g. {missing[0]!r}")
        ids = _group_ids([identities[n] for n in names])
    desc = build_descriptors(maps, kp, settings, progress=progress)
    return prefilter(desc, kp, groups, ids, settings, progress,
                     candidates_per_source(maps.shape[1], settings))


def search(
    parsing: Mapping[str, np.ndarray],
    keypoints: Mapping[str, np.ndarray],
    clothing: Mapping[str, object] | None = None,
    identities: Mapping[str, object] | None = None,
    top_k: int = SearchSettings.top_k,
    min_pose_distance: float = SearchSettings.min_pose_distance,
    exclude_same_identity: bool = True,
    settings: SearchSettings | None = None,
    prefilter_k: int | None = None,
    progress: bool = False,
) -> list[tuple[str, str, float]]:
    """Pseudo pairs of an in-memory set: for every map, the admissible Eq. 1 argmin.

    Args:
      parsing: name -> uint8 [H, W] labels 0..9 (one size for all).
      keypoints: name -> [18, 2] (y, x) pixels of the map, -1 missing.
      clothing: name -> clothing type (any hashable; equal types may pair); computed with
        :func:`spt_tf.data.clothing.clothing_type` when None (then voted per identity when
        identities are given, see :func:`vote_clothing`).
      identities: name -> identity; with ``exclude_same_identity`` two images of one
        identity never pair.
      top_k, min_pose_distance, exclude_same_identity, prefilter_k: see
        :class:`SearchSettings` (ignored when ``settings`` is given; ``prefilter_k``
        defaults to ``max(32, top_k)``).
      settings: all knobs at once.
      progress: tqdm bars.

    Returns:
      ``(from, to, cost)`` in the order of ``parsing``; a map without any admissible
      candidate has no row (their number is logged as a warning).
    """
    if settings is None:
        settings = SearchSettings(
            top_k=top_k, min_pose_distance=min_pose_distance,
            exclude_same_identity=exclude_same_identity,
            prefilter_k=max(SearchSettings.prefilter_k, top_k) if prefilter_k is None
            else prefilter_k)
    names, maps, kp = _stack_inputs(parsing, keypoints)
    cand, _ = _prepare(maps, kp, names, clothing, identities, settings, progress)
    factor = coarse_factor(maps.shape[1], settings.coarse_size)
    coarse = mode_pool(maps, factor) if factor > 1 else None
    sources = np.arange(len(names))
    rows = []
    for s0 in range(0, len(names), 256):
        src = sources[s0:s0 + 256]
        tr = _chunk_transforms(kp, src, cand[src])
        rows += rerank(maps, kp, src, cand[src], tr, settings, coarse)
    _warn_unmatched(len(names) - len(rows))
    return [(names[s], names[c], cost) for s, c, cost in rows]


def _warn_unmatched(count: int) -> None:
    if count:
        _log.warning("%d maps have no admissible pseudo target (another image of the same "
                     "clothing type in a different pose, of another identity when identities "
                     "are excluded) and get no row", count)


def _chunk_transforms(kp: np.ndarray, sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """[S, K, 10, 8] part transforms source -> each candidate (-1 entries: identity pose)."""
    s, k = candidates.shape
    src = np.repeat(kp[sources], k, 0)
    cnd = kp[np.maximum(candidates, 0)].reshape(s * k, 18, 2)
    return transforms_for(src, cnd).reshape(s, k, NUM_PARTS, 8)


# ---------------------------------------------------------------- resumable, multiprocess run


def _fingerprint(names, maps, keypoints, types, identities, settings) -> str:
    """Digest of everything a search result depends on (guards a work folder's reuse)."""
    h = hashlib.sha1()
    h.update(json.dumps([list(names), dataclasses.asdict(settings), list(maps.shape[1:]),
                         [str(t) for t in types],
                         None if identities is None else [str(i) for i in identities]]).encode())
    h.update(np.ascontiguousarray(keypoints, _F).tobytes())
    for i in range(0, len(maps), 1024):
        h.update(np.ascontiguousarray(maps[i:i + 1024]).tobytes())
    return h.hexdigest()


def _write_rows(path: str, rows: Sequence[tuple[str, str, float]]) -> None:
    """Writes ``from,to,cost`` atomically (a killed run never leaves half a file)."""
    tmp = path + ".tmp"
    formats.write_pairs(tmp, [(a, b) for a, b, _ in rows],
                        {"cost": [f"{c:.3f}" for _, _, c in rows]})
    os.replace(tmp, path)


def read_pseudo_pairs(path) -> list[tuple[str, str, float]]:
    """Reads a ``from,to,cost`` file written by this module.

    Raises:
      formats.FormatError: missing file, header without from/to/cost, a bad row (naming the
        row and field).
    """
    pairs = formats.read_pairs(path)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        if "cost" not in header:
            raise formats.FormatError(path, f"header {header} lacks the column 'cost'", 1, "cost")
        i_cost = header.index("cost")
        costs = []
        for row, fields in enumerate(reader, start=2):
            if not fields or not any(x.strip() for x in fields):
                continue
            try:
                costs.append(float(fields[i_cost]))
            except ValueError:
                raise formats.FormatError(path, f"cost {fields[i_cost]!r} is not a number", row,
                                          "cost") from None
    return [(a, b, c) for (a, b), c in zip(pairs, costs)]


_WORKER: dict = {}


def _worker_init(maps_path: str, coarse_path: str | None, keypoints: np.ndarray,
                 settings: dict) -> None:
    _WORKER["maps"] = np.load(maps_path, mmap_mode="r")
    _WORKER["coarse"] = None if coarse_path is None else np.load(coarse_path, mmap_mode="r")
    _WORKER["kp"] = keypoints
    settings["limb_cells"] = tuple(settings["limb_cells"])
    settings["descriptor_rank"] = tuple(settings["descriptor_rank"])
    _WORKER["settings"] = SearchSettings(**settings)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (``VmHWM``, Linux), MB; None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _worker_chunk(task):
    chunk, sources, cands, transforms = task
    t0 = time.process_time()
    rows = rerank(_WORKER["maps"], _WORKER["kp"], sources, cands, transforms, _WORKER["settings"],
                  _WORKER["coarse"])
    return chunk, len(sources), rows, time.process_time() - t0, peak_rss_mb()


def run_search(
    names: Sequence[str],
    maps: np.ndarray,
    keypoints: np.ndarray,
    out: str,
    settings: SearchSettings = SearchSettings(),
    clothing: Sequence | None = None,
    identities: Sequence | None = None,
    workers: int = 1,
    chunk_size: int = 256,
    work_dir: str | None = None,
    stop_after_chunks: int | None = None,
    keep_work: bool = False,
    progress: bool = True,
) -> dict:
    """Searches the pseudo pairs of a whole set into ``out`` (``from,to,cost``), resumably.

    Work goes to ``work_dir`` (default ``out + ".work"``): the inputs' fingerprint, the maps
    as ``maps.npy`` (read by the worker processes through a memory map), the pre-filter's
    candidates, and one ``chunk-NNNNN.csv`` per ``chunk_size`` sources, each written
    atomically. A killed run started again with the same inputs and settings skips what is
    there and continues; other inputs or settings are refused. When every chunk is there,
    they are merged into ``out`` (atomically) and the work folder is removed.

    Args:
      names: [N] image names.
      maps: [N, H, W] uint8 labels (an array or a memory map).
      keypoints: [N, 18, 2] (y, x) pixels of the maps.
      out: the pairs CSV to write.
      settings: search settings.
      clothing: [N] clothing types, or None to compute them from the maps (and, with
        identities and ``settings.clothing_vote``, vote them per identity).
      identities: [N] identities, or None (unknown).
      workers: processes for the exact re-ranking (1: in this process).
      chunk_size: sources per chunk file.
      work_dir: the work folder.
      stop_after_chunks: stop after writing this many chunks (tests of the resume).
      keep_work: keep the work folder after the merge.
      progress: tqdm bars.

    Returns:
      Summary dict: ``complete``, ``sources``, ``pairs``, ``unmatched``, ``groups`` (clothing
      type -> count), ``seconds``, ``out``, and ``stages``: wall seconds of this call's
      stages (``clothing``, ``descriptors``, ``prefilter``, ``exact``, ``merge``), their CPU
      seconds (``*_cpu``; ``exact_cpu``, both exact stages, summed over the worker
      processes), ``coarse_pairs`` and ``pairs_evaluated`` (exact costs computed at reduced
      and at full resolution) and, with workers, ``worker_peak_rss_mb``.
    """
    t0 = time.time()
    stages: dict = {}
    names = list(names)
    n = len(names)
    kp = np.asarray(keypoints, _F).reshape(n, 18, 2)
    if maps.shape[0] != n:
        raise ValueError(f"{maps.shape[0]} maps for {n} names")
    if len(set(names)) != n:
        raise ValueError("image names must be unique")
    work_dir = work_dir or os.fspath(out) + ".work"
    os.makedirs(work_dir, exist_ok=True)
    tc, pc = time.time(), time.process_time()
    ids = None if identities is None else list(identities)
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} identities for {n} maps")
    if clothing is not None:
        types = list(clothing)
    else:
        types = clothing_types(maps, kp, progress)
        if ids is not None and settings.clothing_vote:
            types = vote_clothing(types, ids)
    stages["clothing"], stages["clothing_cpu"] = time.time() - tc, time.process_time() - pc
    if len(types) != n:
        raise ValueError(f"{len(types)} clothing types for {n} maps")
    fp = _fingerprint(names, maps, kp, types, ids, settings)
    meta_path = os.path.join(work_dir, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f).get("fingerprint")
        if old != fp:
            raise ValueError(f"{work_dir} holds a search of other inputs or settings; delete it "
                             "or write to another output")
    else:
        with open(meta_path + ".tmp", "w") as f:
            json.dump({"fingerprint": fp, "settings": dataclasses.asdict(settings), "n": n}, f)
        os.replace(meta_path + ".tmp", meta_path)

    cand_path = os.path.join(work_dir, "candidates.npy")
    if os.path.exists(cand_path):
        cand = np.load(cand_path)
    else:
        groups = _group_ids(types)
        id_arr = _group_ids(ids) if ids is not None else None
        tc, pc = time.time(), time.process_time()
        desc = build_descriptors(maps, kp, settings, progress=progress)
        stages["descriptors"] = time.time() - tc
        stages["descriptors_cpu"] = time.process_time() - pc
        tc, pc = time.time(), time.process_time()
        cand, _ = prefilter(desc, kp, groups, id_arr, settings, progress,
                            candidates_per_source(maps.shape[1], settings))
        stages["prefilter"], stages["prefilter_cpu"] = time.time() - tc, time.process_time() - pc
        del desc
        np.save(cand_path + ".tmp.npy", cand)
        os.replace(cand_path + ".tmp.npy", cand_path)

    n_chunks = -(-n // chunk_size)
    chunk_path = [os.path.join(work_dir, f"chunk-{c:05d}.csv") for c in range(n_chunks)]
    pending = [c for c in range(n_chunks) if not os.path.exists(chunk_path[c])]
    if stop_after_chunks is not None:
        pending = pending[:stop_after_chunks]

    def tasks():
        for c in pending:
            src = np.arange(c * chunk_size, min((c + 1) * chunk_size, n))
            yield c, src, cand[src], _chunk_transforms(kp, src, cand[src])

    bar = None
    if progress:
        from tqdm import tqdm
        done = sum(min((c + 1) * chunk_size, n) - c * chunk_size
                   for c in range(n_chunks) if c not in pending)
        bar = tqdm(total=n, initial=done, desc="exact re-rank", unit="map")

    def write(c, rows):
        _write_rows(chunk_path[c], [(names[s], names[t], cost) for s, t, cost in rows])

    factor = coarse_factor(maps.shape[1], settings.coarse_size)
    coarse_path = os.path.join(work_dir, "coarse.npy")
    coarse = None
    if pending and factor > 1:
        tc = time.time()
        if os.path.exists(coarse_path):
            coarse = np.load(coarse_path, mmap_mode="r")
        else:
            coarse = mode_pool(maps, factor)
            np.save(coarse_path + ".tmp.npy", coarse)
            os.replace(coarse_path + ".tmp.npy", coarse_path)
        stages["coarse_maps"] = time.time() - tc

    tc = time.time()
    stages["exact_cpu"] = 0.0
    n_valid = np.concatenate([(cand[c * chunk_size:(c + 1) * chunk_size] >= 0).sum(1)
                              for c in pending] or [np.zeros(0, np.int64)])
    coarse_on = coarse_factor(maps.shape[1], settings.coarse_size) > 1
    stages["coarse_pairs"] = int(n_valid.sum()) if coarse_on else 0
    stages["pairs_evaluated"] = int(np.minimum(n_valid, settings.top_k).sum()) if coarse_on \
        else int(n_valid.sum())
    if pending:
        if workers <= 1:
            for c, src, cs, tr in tasks():
                p0 = time.process_time()
                write(c, rerank(maps, kp, src, cs, tr, settings, coarse))
                stages["exact_cpu"] += time.process_time() - p0
                if bar is not None:
                    bar.update(len(src))
        else:
            import multiprocessing

            maps_path = os.path.join(work_dir, "maps.npy")
            if not isinstance(maps, np.memmap) or os.path.abspath(
                    getattr(maps, "filename", "") or "") != os.path.abspath(maps_path):
                if not os.path.exists(maps_path):
                    np.save(maps_path + ".tmp.npy", np.asarray(maps))
                    os.replace(maps_path + ".tmp.npy", maps_path)
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, _worker_init,
                          (maps_path, coarse_path if coarse is not None else None, kp,
                           dataclasses.asdict(settings))) as pool:
                for c, count, rows, cpu, rss in pool.imap_unordered(_worker_chunk, tasks()):
                    write(c, rows)
                    stages["exact_cpu"] += cpu
                    if rss is not None:
                        stages["worker_peak_rss_mb"] = max(stages.get("worker_peak_rss_mb", 0),
                                                           rss)
                    if bar is not None:
                        bar.update(count)
    stages["exact"] = time.time() - tc
    if bar is not None:
        bar.close()
    summary = {"complete": False, "sources": n, "out": os.fspath(out), "stages": stages,
               "groups": {str(t): k for t, k in sorted(
                   _count(types).items(), key=lambda kv: -kv[1])}}
    if not all(os.path.exists(p) for p in chunk_path):
        summary["seconds"] = time.time() - t0
        return summary
    tc = time.time()
    rows = []
    for p in chunk_path:
        rows += read_pseudo_pairs(p)
    _write_rows(os.fspath(out), rows)
    stages["merge"] = time.time() - tc
    _warn_unmatched(n - len(rows))
    if not keep_work:
        for p in chunk_path + [cand_path, meta_path, coarse_path,
                               os.path.join(work_dir, "maps.npy")]:
            if os.path.exists(p):
                os.remove(p)
        if not os.listdir(work_dir):
            os.rmdir(work_dir)
    summary.update(complete=True, pairs=len(rows), unmatched=n - len(rows),
                   seconds=time.time() - t0)
    return summary


def _count(items) -> dict:
    out: dict = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


# ---------------------------------------------------------------- dataset loading and CLI


def read_identities(path) -> dict[str, str]:
    """name -> identity from a CSV with the columns ``name`` and ``identity`` (identities.csv).

    Raises:
      formats.FormatError: missing file or column, empty field, duplicate name.
    """
    try:
        f = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise formats.FormatError(path, "file not found") from None
    with f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        for col in ("name", "identity"):
            if col not in header:
                raise formats.FormatError(path, f"header {header} lacks the column {col!r}", 1,
                                          col)
        i_name, i_id = header.index("name"), header.index("identity")
        out: dict[str, str] = {}
        for row, fields in enumerate(reader, start=2):
            if not fields or not any(x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise formats.FormatError(path, f"expected {len(header)} columns, got "
                                          f"{len(fields)}", row)
            name, ident = fields[i_name].strip(), fields[i_id].strip()
            for col, v in (("name", name), ("identity", ident)):
                if not v:
                    raise formats.FormatError(path, "empty field", row, col)
            if name in out:
                raise formats.FormatError(path, f"duplicate name {name!r}", row, "name")
            out[name] = ident
    return out


def load_dataset(
    annotations: str,
    parsing_dir: str,
    size: tuple[int, int] | None = None,
    maps_out: str | None = None,
    tolerance: float = 2.0,
    progress: bool = True,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads the keypoints and every parsing map of a split.

    Maps of another size than ``size`` are resized (nearest neighbour) and their keypoints
    scaled with them (``y * H / h``, the ``spt_tf.geometry`` pixel convention).

    Args:
      annotations: annotation CSV (``spt_tf.data.formats``).
      parsing_dir: folder of ``<stem>.png`` / ``<stem>.npy`` maps.
      size: (H, W) to work at; None: the maps' own (all must agree).
      maps_out: optional ``.npy`` path; the maps are written there as a memory map instead of
        held in memory (large sets).
      tolerance: pixels a keypoint may lie outside its map.
      progress: tqdm bar.

    Returns:
      (names, maps [N, H, W] uint8, keypoints [N, 18, 2] float32 at (H, W)).

    Raises:
      formats.FormatError: a missing or bad file, or maps of different sizes without ``size``.
    """
    kps = formats.read_annotations(annotations)
    names = list(kps)
    if not names:
        raise formats.FormatError(annotations, "no annotation rows")
    first = formats.read_parsing(formats.find_parsing(parsing_dir, names[0]))
    h, w = size if size is not None else first.shape
    if maps_out is not None:
        maps = np.lib.format.open_memmap(maps_out, mode="w+", dtype=np.uint8,
                                         shape=(len(names), h, w))
    else:
        maps = np.empty((len(names), h, w), np.uint8)
    kp = np.empty((len(names), 18, 2), _F)
    it = enumerate(names)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(names), desc="loading maps", unit="map")
    import cv2

    for i, name in it:
        path = formats.find_parsing(parsing_dir, name)
        m = formats.read_parsing(path)
        k = kps[name].copy()
        if m.shape != (h, w):
            if size is None:
                raise formats.FormatError(path, f"map size {m.shape} differs from the first map's "
                                          f"{(h, w)}; pass a working size")
            vis = present(k)
            k = np.where(vis[:, None], k * np.array([h / m.shape[0], w / m.shape[1]], _F), k)
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        vis = present(k)
        bad = vis & ((k[:, 0] < -tolerance) | (k[:, 0] > h - 1 + tolerance)
                     | (k[:, 1] < -tolerance) | (k[:, 1] > w - 1 + tolerance))
        if bad.any():
            j = int(np.nonzero(bad)[0][0])
            raise formats.FormatError(annotations, f"keypoint {j} of {name!r} at {k[j].tolist()} "
                                      f"lies outside its {h}x{w} map", None, "keypoints")
        maps[i] = m
        kp[i] = k
    if isinstance(maps, np.memmap):
        maps.flush()
    return names, maps, kp


def _load_config(spec: str):
    """An ml_collections config file ``path[:arg]`` -> its ``get_config([arg])``."""
    import importlib.util

    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found")
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    if root not in sys.path:
        sys.path.insert(0, root)  # configs import `configs.base`
    mod_spec = importlib.util.spec_from_file_location("_pseudo_pairs_config", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.get_config(arg) if arg else mod.get_config()


def main(argv: Sequence[str] | None = None) -> dict:
    """Command line: see the module docstring; prints and returns the summary."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m spt_tf.data.pseudo_pairs",
                                description="Pseudo-label search of SPT Eq. 1.")
    p.add_argument("--config", help="ml_collections config file (path[:arg]); uses data.root, "
                   "data.parsing_dir, data.annotations_train, data.pseudo_pairs, "
                   "data.identities, data.height/width, data.keypoint_tolerance")
    p.add_argument("--data_dir", help="dataset root (instead of --config)")
    p.add_argument("--annotations", help="annotation CSV (default DATA_DIR/annotation-train.csv)")
    p.add_argument("--parsing_dir", help="parsing maps (default DATA_DIR/parsing)")
    p.add_argument("--identities", help="identities CSV (name,identity); optional")
    p.add_argument("--out", help="output CSV (default: the config's data.pseudo_pairs, or "
                   "DATA_DIR/pseudo-pairs.csv)")
    p.add_argument("--height", type=int, help="working height (default: config / map size)")
    p.add_argument("--width", type=int, help="working width")
    p.add_argument("--workers", type=int, default=1, help="processes for the exact re-ranking")
    p.add_argument("--top_k", type=int, default=SearchSettings.top_k,
                   help="candidates per map that get the exact cost at full resolution")
    p.add_argument("--prefilter_k", type=int, default=SearchSettings.prefilter_k,
                   help="candidates per map kept by the descriptor pre-filter")
    p.add_argument("--coarse_size", type=int, default=SearchSettings.coarse_size,
                   help="height of the coarse exact stage (0: none)")
    p.add_argument("--min_pose_distance", type=float, default=SearchSettings.min_pose_distance)
    p.add_argument("--allow_same_identity", action="store_true",
                   help="let two images of one identity pair (when identities are known)")
    p.add_argument("--chunk_size", type=int, default=256)
    p.add_argument("--keep_work", action="store_true", help="keep the work folder")
    p.add_argument("--no_progress", action="store_true")
    a = p.parse_args(argv)
    tolerance = 2.0
    size = None
    if a.config:
        cfg = _load_config(a.config)
        d = cfg.data
        annotations = formats.resolve(d.root, d.annotations_train)
        parsing_dir = formats.resolve(d.root, d.parsing_dir)
        out = a.out or formats.resolve(d.root, d.pseudo_pairs)
        ident_path = a.identities or (formats.resolve(d.root, d.identities) if d.identities
                                      else None)
        size = (int(d.height), int(d.width))
        tolerance = float(d.keypoint_tolerance)
    elif a.data_dir:
        annotations = a.annotations or os.path.join(a.data_dir, "annotation-train.csv")
        parsing_dir = a.parsing_dir or os.path.join(a.data_dir, "parsing")
        out = a.out or os.path.join(a.data_dir, "pseudo-pairs.csv")
        ident_path = a.identities
    else:
        if not (a.annotations and a.parsing_dir and a.out):
            p.error("give --config, or --data_dir, or all of --annotations --parsing_dir --out")
        annotations, parsing_dir, out, ident_path = a.annotations, a.parsing_dir, a.out, \
            a.identities
    if a.height or a.width:
        if not (a.height and a.width):
            p.error("give both --height and --width")
        size = (a.height, a.width)
    settings = SearchSettings(top_k=a.top_k, prefilter_k=a.prefilter_k,
                              coarse_size=a.coarse_size, min_pose_distance=a.min_pose_distance,
                              exclude_same_identity=not a.allow_same_identity)
    work_dir = os.fspath(out) + ".work"
    os.makedirs(work_dir, exist_ok=True)
    maps_path = os.path.join(work_dir, "maps.npy")
    names, maps, kp = load_dataset(annotations, parsing_dir, size, maps_path, tolerance,
                                   not a.no_progress)
    ids = None
    if ident_path:
        table = read_identities(ident_path)
        missing = [n for n in names if n not in table]
        if missing:
            raise formats.FormatError(ident_path, f"no identity for {len(missing)} annotated "
                                      f"images, e.g. {missing[0]!r}")
        ids = [table[n] for n in names]
    summary = run_search(names, maps, kp, out, settings, identities=ids, workers=a.workers,
                         chunk_size=a.chunk_size, work_dir=work_dir, keep_work=a.keep_work,
                         progress=not a.no_progress)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
