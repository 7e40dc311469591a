"""Clothing type of a person from a semantic map (10 SPT labels) and keypoints.

The pseudo-label search of SPT (Eq. 1) only pairs maps of the same clothing type. The type
is read off the parsing map along the limbs, so it needs no extra annotation:

* **sleeves** (``sleeveless`` / ``short`` / ``long``): along each visible arm, shoulder ->
  elbow -> wrist, small windows (half side 0.05 body scales) are sampled and their pixels
  counted as garment (``upper_clothes``) or skin (either arm label). A forearm
  (elbow -> wrist, 20-90 % of its length) with more than 60 % garment pixels and an upper
  arm (shoulder -> elbow, 20-90 %) with more than 70 % is ``long``; otherwise an upper arm
  with more than 48 % garment is ``short``; otherwise ``sleeveless``. Samples inside the torso
  quadrilateral (shoulders, hips) are skipped: an arm behind or across the torso would
  count the torso's garment as a sleeve. Both arms are pooled. No forearm visible and a
  covered upper arm cannot tell short from long: ``unknown``; no arm visible: ``unknown``.
* **lower garment** (``pants`` / ``shorts`` / ``skirt`` / ``dress``): the ``skirt`` label
  holding most of the lower-garment pixels (``pants`` + ``skirt``) is ``skirt``. Otherwise,
  with ``pants`` pixels, the same coverage test on the shins (knee -> ankle, 20-90 %,
  more than half garment) tells ``pants`` from ``shorts``; without visible shins, covered thighs are
  ``unknown`` (the crop ends above the knees). No lower garment at all but thighs covered
  by ``upper_clothes`` (LIP's ``dress`` maps to it) is ``dress``. No leg visible:
  ``unknown``.

``docs/pseudo_pairs.md`` holds the measured accuracy on the synthetic people.
"""

from __future__ import annotations

import numpy as np

from spt_tf import labels as labels_lib

SLEEVES = ("sleeveless", "short", "long", "unknown")
LOWERS = ("pants", "shorts", "skirt", "dress", "unknown")
UNKNOWN = "unknown"

# Keypoints (COCO-18) of each limb: (shoulder/hip, elbow/knee, wrist/ankle).
_ARMS = ((2, 3, 4), (5, 6, 7))
_LEGS = ((8, 9, 10), (11, 12, 13))
_TORSO = (2, 5, 11, 8)  # Rsho, Lsho, Lhip, Rhip: around the torso
_ARM_SKIN = (labels_lib.LEFT_ARM, labels_lib.RIGHT_ARM)
_LEG_SKIN = (labels_lib.LEFT_LEG, labels_lib.RIGHT_LEG)
# Parts of a segment that are sampled: the joint ends are left out, where the torso, the
# other segment or a hand/foot blur the labels.
_UPPER_SPAN = (0.2, 0.9)
_LOWER_SPAN = (0.2, 0.9)
# Window half side, times the body scale (shoulder-hip distance).
_WINDOW = 0.05
# A segment with fewer labelled pixels than this tells nothing (occluded, off-image).
_MIN_PIXELS = 4
# Garment fraction above which a shin is covered (pants).
_LOWER_COVERED = 0.5
# Long sleeves: forearm and upper-arm garment fractions above these. A bare forearm across
# the torso in a side view (where the torso quadrilateral is thin and excludes little)
# collects up to ~0.55 garment from the torso; a long sleeve gives >= 0.6 and a fully
# covered upper arm (measured on the synthetic people, docs/pseudo_pairs.md).
_FOREARM_COVERED = 0.6
_SLEEVE_FULL = 0.7
# Upper-arm garment fraction above which there is a sleeve: a short sleeve covers the top
# third to two thirds of the span (>= 0.5 in 95 % of the synthetic people); a bare arm
# hanging against the torso collects < 0.47 in 95 %.
_UPPER_COVERED = 0.48


def _present(kp: np.ndarray, i: int) -> bool:
    return bool(np.all(kp[i] != -1))


def _body_scale(kp: np.ndarray) -> float:
    ds = [np.linalg.norm(kp[h] - kp[s]) for h, s in ((8, 2), (11, 5)) if _present(kp, h) and _present(kp, s)]
    return float(np.sqrt(np.mean(np.square(ds)))) if ds else 0.0


def _inside_convex(poly: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Whether points (y, x) [n] lie inside the convex polygon [m, 2] (y, x), any orientation."""
    pos = np.ones(len(y), bool)
    neg = np.ones(len(y), bool)
    for i in range(len(poly)):
        ay, ax = poly[i]
        by, bx = poly[(i + 1) % len(poly)]
        v = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
        pos &= v > 0
        neg &= v < 0
    return pos | neg


def _segment_counts(labels, p0, p1, span, radius, garment, skin, exclude=None):
    """(garment pixels, skin pixels) in windows sampled along p0 -> p1 within ``span``.

    Windows centred on the same pixel count once. Samples inside the convex polygon
    ``exclude`` (the torso, for arms) are skipped.
    """
    h, w = labels.shape
    length = float(np.linalg.norm(p1 - p0))
    n = max(4, int(length / max(radius, 1.0)))
    t = np.linspace(span[0], span[1], n)
    y = p0[0] + t * (p1[0] - p0[0])
    x = p0[1] + t * (p1[1] - p0[1])
    if exclude is not None:
        keep = ~_inside_convex(exclude, y, x)
        y, x = y[keep], x[keep]
    centres = np.unique(np.stack([np.round(y), np.round(x)], 1).astype(np.int64), axis=0)
    if not len(centres):
        return 0, 0
    off = np.arange(-radius, radius + 1)
    yy = (centres[:, 0, None, None] + off[None, :, None]).repeat(len(off), 2).reshape(-1)
    xx = (centres[:, 1, None, None] + off[None, None, :]).repeat(len(off), 1).reshape(-1)
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    vals = labels[yy[inside], xx[inside]]
    return int(np.isin(vals, garment).sum()), int(np.isin(vals, skin).sum())


def _limb_coverage(labels, kp, limbs, garment, skin, exclude=None):
    """Pooled (upper-segment, lower-segment) garment fractions over the limbs; None if unseen."""
    st = _body_scale(kp)
    radius = max(1, int(round(_WINDOW * st))) if st > 0 else 1
    up = [0, 0]
    low = [0, 0]
    for a, b, c in limbs:
        if _present(kp, a) and _present(kp, b):
            g, s = _segment_counts(labels, kp[a], kp[b], _UPPER_SPAN, radius, garment, skin, exclude)
            up[0] += g
            up[1] += s
        if _present(kp, b) and _present(kp, c):
            g, s = _segment_counts(labels, kp[b], kp[c], _LOWER_SPAN, radius, garment, skin, exclude)
            low[0] += g
            low[1] += s
    frac = [None if sum(v) < _MIN_PIXELS else v[0] / sum(v) for v in (up, low)]
    return frac[0], frac[1]


def _check(labels, keypoints):
    labels = np.asarray(labels)
    kp = np.asarray(keypoints, np.float32)
    if labels.ndim != 2:
        raise ValueError(f"parsing map must be [H, W], got shape {labels.shape}")
    if kp.shape != (18, 2):
        raise ValueError(f"keypoints must be [18, 2] (y, x), got shape {kp.shape}")
    return labels, kp


def sleeve_type(labels: np.ndarray, keypoints: np.ndarray) -> str:
    """``sleeveless`` / ``short`` / ``long`` / ``unknown`` (see the module docstring).

    Args:
      labels: [H, W] SPT labels 0..9.
      keypoints: [18, 2] (y, x) pixels of this map, -1 missing.
    """
    labels, kp = _check(labels, keypoints)
    torso = kp[list(_TORSO)] if all(_present(kp, i) for i in _TORSO) else None
    up, low = _limb_coverage(labels, kp, _ARMS, (labels_lib.UPPER,), _ARM_SKIN, torso)
    if low is not None:
        if low > _FOREARM_COVERED and (up is None or up > _SLEEVE_FULL):
            return "long"
        if up is None or up > _UPPER_COVERED:
            return "short"
        return "sleeveless"
    if up is None or up > _UPPER_COVERED:
        return UNKNOWN
    return "sleeveless"


def lower_type(labels: np.ndarray, keypoints: np.ndarray) -> str:
    """``pants`` / ``shorts`` / ``skirt`` / ``dress`` / ``unknown`` (see the module docstring).

    Args:
      labels: [H, W] SPT labels 0..9.
      keypoints: [18, 2] (y, x) pixels of this map, -1 missing.
    """
    labels, kp = _check(labels, keypoints)
    pants = int((labels == labels_lib.PANTS).sum())
    skirt = int((labels == labels_lib.SKIRT).sum())
    if skirt + pants >= _MIN_PIXELS and skirt > pants:
        return "skirt"
    if pants >= _MIN_PIXELS:
        up, low = _limb_coverage(labels, kp, _LEGS, (labels_lib.PANTS,), _LEG_SKIN)
        if low is not None:
            return "pants" if low > 0.5 else "shorts"
        return UNKNOWN if (up is None or up > 0.5) else "shorts"
    up, _ = _limb_coverage(labels, kp, _LEGS, (labels_lib.UPPER,), _LEG_SKIN)
    if up is not None and up > 0.5:
        return "dress"
    return UNKNOWN


def clothing_type(labels: np.ndarray, keypoints: np.ndarray) -> tuple[str, str]:
    """``(sleeve type, lower type)`` of one person.

    Args:
      labels: [H, W] SPT labels 0..9.
      keypoints: [18, 2] (y, x) pixels of this map, -1 missing.

    Returns:
      e.g. ``("short", "pants")``; each element may be ``"unknown"``.
    """
    return sleeve_type(labels, keypoints), lower_type(labels, keypoints)
