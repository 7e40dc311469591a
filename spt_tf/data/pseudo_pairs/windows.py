"""Where a part's Eq. 1 term can be non-zero: polygons and their per-row pixel spans.

The exact cost (:mod:`spt_tf.data.pseudo_pairs.cost`) evaluates each part only on the union
of the candidate's part polygon and the pre-image of the source's part polygon (grown by the
bilinear footprint); for the torso, whose mask is the whole image, on the foregrounds'
convex hulls. These helpers build the polygons and turn them into row runs of pixels, for
many pairs at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spt_tf.data.pseudo_pairs.masks import (
    _LIMBS,
    _head_squares,
    _limb_rect,
    body_scale,
    part_presence,
)


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
        norm = np.sqrt((side**2).sum(-1, keepdims=True))
        out = out - side / np.maximum(norm, 1e-9) * margin
    # Degenerate quads (zero sides) grow around the centre.
    return np.where(np.isfinite(out), out, c)


def _box_quad(box: np.ndarray) -> np.ndarray:
    """[..., 4] (y0, y1, x0, x1) -> [..., 4, 2] corners."""
    y0, y1, x0, x1 = (box[..., i] for i in range(4))
    return np.stack(
        [np.stack([y0, x0], -1), np.stack([y0, x1], -1), np.stack([y1, x1], -1), np.stack([y1, x0], -1)], -2
    )


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
