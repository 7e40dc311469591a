"""Parsing maps of custom images and the edits of controlled manipulation (paper Fig. 9).

Reading: SPT-10 label maps (``.png``/``.npy``), LIP-20 PNGs from any human parser
(converted by :func:`spt_tf.labels.lip_to_spt`, sides of gloves and socks from
the keypoints), and user-painted label PNGs (grey labels 0..9, or a colour PNG
painted with the colours of :data:`spt_tf.labels.PALETTE`).

Edits (all on ``[H, W]`` uint8 SPT maps with ``[18, 2]`` ``(y, x)`` keypoints in
the same pixels; each returns a new map and changes nothing but the labels it
names):

* :func:`set_sleeves` ``none | short | long``: along each arm (shoulder ->
  elbow -> wrist, arc position ``s`` = 0 at the shoulder, 1 at the elbow, 2 at
  the wrist) the sleeve ends at ``SLEEVE_END[length]``; upper-clothes pixels of
  the arm past that point become arm skin, arm pixels before it become upper
  clothes. An upper-clothes pixel belongs to an arm when it is nearer that
  arm's bones than the torso quadrilateral, the other arm and the legs, and
  within ``ARM_HALF_WIDTH * st`` of them (``st`` the shoulder-hip distance).
  Hands (past the wrist) are never touched.
* :func:`set_lower` ``skirt | pants``: pants -> a skirt spanning between the
  legs from the hips down to the knees (pants/legs/background inside that
  trapezoid become skirt; pants outside it, i.e. below the hem, become leg
  skin of the nearer leg); skirt -> pants (skirt pixels on the legs' bones,
  the pelvis or the waist above the hips become pants, the rest background;
  bare legs down to the ankles become pants; feet stay legs).
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from absl import logging

from spt_tf import labels
from spt_tf.apps import keypoints as kp_lib
from spt_tf.data import formats

SLEEVES = ("none", "short", "long")
LOWERS = ("pants", "skirt")
# Arc position (0 shoulder, 1 elbow, 2 wrist) where each sleeve length ends.
SLEEVE_END = {"none": 0.0, "short": 0.5, "long": 2.0}
# Half widths, in units of the body scale st (shoulder-hip distance).
ARM_HALF_WIDTH = 0.35
LEG_HALF_WIDTH_MIN = 0.1
# Leg half width from the hip width (hip joints sit near the thighs' centres).
LEG_HALF_WIDTH_HIPS = 0.45
# Skirt trapezoid: outward margins at the hips and at the hem (times the hip width),
# the waist band above the hips (times st).
SKIRT_MARGIN_TOP = 0.3
SKIRT_MARGIN_HEM = 0.6
WAIST_BAND = 0.3
# Pants: the crotch lies this fraction of the hip -> knee way down.
CROTCH = 0.3

_K = kp_lib.KP


class EditError(ValueError):
    """An edit cannot be applied to this map (e.g. no pants to turn into a skirt)."""


# ---------------------------------------------------------------- reading


def read_spt(path, shape: tuple[int, int], image_path: str = "the image") -> np.ndarray:
    """Reads an SPT-10 map (``.png``/``.npy``) that must match the image size ``shape``."""
    lab = formats.read_parsing(path, num_labels=labels.NUM_LABELS)
    _check_size(path, lab.shape, shape, image_path)
    return lab


def read_lip(path, shape: tuple[int, int], keypoints: np.ndarray | None, image_path: str = "the image") -> np.ndarray:
    """Reads a LIP-20 PNG and converts it to SPT-10 (``spt_tf.labels.LIP_TO_SPT``; docs/data.md).

    Args:
      path: the LIP label PNG (values 0..19).
      shape: the image's ``(H, W)``; the map must have it.
      keypoints: ``[18, 2]`` in the same pixels; they choose the side of
        glove / socks pixels (nearer wrist / ankle).
      image_path: names the image in the size-mismatch error.
    """
    lip = formats.read_parsing(path, num_labels=labels.NUM_LIP_LABELS)
    _check_size(path, lip.shape, shape, image_path)
    try:
        return labels.lip_to_spt(lip, keypoints)
    except ValueError as e:
        raise formats.FormatError(path, str(e)) from None


def read_label_edit(path, shape: tuple[int, int], image_path: str = "the image", tolerance: int = 8) -> np.ndarray:
    """Reads a user-painted label map: grey labels 0..9, or colours of ``labels.PALETTE``.

    A colour PNG is matched pixel by pixel to the nearest palette colour; a
    pixel farther than ``tolerance`` (max abs channel difference) from every
    palette colour is an error (anti-aliased brushes: paint with a hard brush).
    """
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() == ".npy":
        return read_spt(path, shape, image_path)
    if not os.path.isfile(path):
        raise formats.FormatError(path, "file not found")
    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise formats.FormatError(path, "cannot decode the image (corrupt or unsupported format)")
    if img.dtype != np.uint8:
        raise formats.FormatError(path, f"label PNG must be 8-bit, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    if img.ndim == 3 and img.shape[2] == 3 and (img == img[:, :, :1]).all():
        img = img[:, :, 0]  # grey saved as RGB
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return read_spt(path, shape, image_path)
    _check_size(path, img.shape[:2], shape, image_path)
    rgb = img[:, :, ::-1].astype(np.int16)
    diff = np.abs(rgb[:, :, None, :] - labels.PALETTE.astype(np.int16)[None, None]).max(-1)  # [H, W, 10]
    lab = diff.argmin(-1)
    bad = diff.min(-1) > tolerance
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise formats.FormatError(
            path,
            f"{int(bad.sum())} pixels match no label colour (first at y={y}, x={x}: RGB {tuple(rgb[y, x])}); "
            "paint with the colours of spt_tf.labels.PALETTE (see docs/applications.md) or save grey labels 0..9",
        )
    return lab.astype(np.uint8)


def _check_size(path, got, shape, image_path):
    if tuple(got) != tuple(shape):
        raise formats.FormatError(
            path, f"parsing size {tuple(got)} differs from the image {image_path} {tuple(shape)} (H, W)"
        )


# ---------------------------------------------------------------- geometry helpers


def _grid(shape):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return yy.astype(np.float64), xx.astype(np.float64)


def _segment(yy, xx, p0, p1):
    """Unclamped projection parameter t and distance to the clamped segment p0 -> p1."""
    d = np.asarray(p1, np.float64) - np.asarray(p0, np.float64)
    n2 = max(float(d @ d), 1e-12)
    t = ((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / n2
    tc = np.clip(t, 0.0, 1.0)
    dist = np.hypot(yy - (p0[0] + tc * d[0]), xx - (p0[1] + tc * d[1]))
    return t, dist


def _chain(yy, xx, points):
    """Distance to a polyline and the arc position s (segment index + clamped t) of its nearest point.

    Also returns ``beyond``: the pixel projects past the last point (hands, feet).
    """
    dist = np.full(yy.shape, np.inf)
    s = np.zeros(yy.shape)
    beyond = np.zeros(yy.shape, bool)
    for i in range(len(points) - 1):
        t, d = _segment(yy, xx, points[i], points[i + 1])
        nearer = d < dist
        dist = np.where(nearer, d, dist)
        s = np.where(nearer, i + np.clip(t, 0.0, 1.0), s)
        if i == len(points) - 2:
            beyond = nearer & (t > 1.0)
    return dist, s, beyond


def _polygon_mask(shape, points_yx) -> np.ndarray:
    pts = np.round(np.asarray(points_yx, np.float64)[:, ::-1] * 16).astype(np.int32)  # (x, y), 4 fraction bits
    hull = cv2.convexHull(pts)
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _polygon_distance(yy, xx, points_yx, inside):
    """Distance to a polygon's boundary outside it, 0 inside."""
    dist = np.full(yy.shape, np.inf)
    n = len(points_yx)
    for i in range(n):
        _, d = _segment(yy, xx, points_yx[i], points_yx[(i + 1) % n])
        dist = np.minimum(dist, d)
    return np.where(inside, 0.0, dist)


def _body_scale(kp) -> float:
    d = [np.hypot(*(kp[_K[h]] - kp[_K[s]])) for h, s in (("Rhip", "Rsho"), ("Lhip", "Lsho"))]
    return float(np.mean(d))


def _need(kp, names, what):
    missing = kp_lib.missing_names(kp, names)
    if missing:
        raise kp_lib.KeypointError(
            f"{what}: missing keypoints {', '.join(missing)}; this edit needs {', '.join(names)}"
        )


def _prepare(parsing, keypoints, what):
    par = np.asarray(parsing)
    if par.ndim != 2:
        raise ValueError(f"parsing must be [H, W], got shape {par.shape}")
    kp = kp_lib.check_keypoints(keypoints, what).astype(np.float64)
    return par.astype(np.uint8), kp


def _leg_chain(kp, side):
    """Hip, knee, ankle of one side; a missing ankle continues the thigh (cropped photos)."""
    hip, kne, ank = (kp[_K[side + n]] for n in ("hip", "kne", "ank"))
    if np.any(ank == kp_lib.MISSING):
        logging.info("edit: %sank missing; the shin is taken as long as the thigh, along it", side)
        ank = kne + (kne - hip)
    return [hip, kne, ank]


# ---------------------------------------------------------------- sleeves


def set_sleeves(parsing: np.ndarray, keypoints: np.ndarray, length: str) -> np.ndarray:
    """Sets the sleeve length of the upper clothes.

    Args:
      parsing: uint8 ``[H, W]`` SPT labels.
      keypoints: ``[18, 2]`` ``(y, x)`` in the map's pixels; needs the torso
        and, for each arm that shows, its shoulder, elbow and wrist (an arm
        whose elbow and wrist are both missing and has no arm pixels is hidden
        and left as it is).
      length: ``"none"`` (sleeveless), ``"short"`` (to mid upper arm) or
        ``"long"`` (to the wrist).

    Returns:
      uint8 ``[H, W]``: only upper-clothes and arm labels change.
    """
    if length not in SLEEVES:
        raise ValueError(f"sleeves must be one of {SLEEVES}, got {length!r}")
    par, kp = _prepare(parsing, keypoints, "sleeve edit")
    if not (par == labels.UPPER).any():
        raise EditError("sleeve edit: the map has no upper-clothes pixels")
    yy, xx = _grid(par.shape)
    st = _body_scale(kp)
    torso_pts = [kp[_K[n]] for n in ("Rsho", "Lsho", "Lhip", "Rhip")]
    torso_d = _polygon_distance(yy, xx, torso_pts, _polygon_mask(par.shape, torso_pts))
    arm_label = {"R": labels.RIGHT_ARM, "L": labels.LEFT_ARM}
    arms = {}
    for side in ("R", "L"):
        names = [side + n for n in ("sho", "elb", "wri")]
        missing = kp_lib.missing_names(kp, names)
        if missing:
            hidden = len(missing) == 2 and f"{side}sho" not in missing and not (par == arm_label[side]).any()
            if hidden:
                logging.info("sleeve edit: the %s arm is hidden (elbow and wrist missing); left as it is", side)
                continue
            raise kp_lib.KeypointError(
                f"sleeve edit: missing keypoints {', '.join(missing)}; each visible arm needs its "
                "shoulder, elbow and wrist"
            )
        arms[side] = _chain(yy, xx, [kp[_K[n]] for n in names])
    legs = [_chain(yy, xx, _leg_chain(kp, s))[0] for s in ("R", "L") if not kp_lib.missing_names(kp, [s + "kne"])]
    out = par.copy()
    end = SLEEVE_END[length]
    for side, (dist, s, beyond) in arms.items():
        rivals = [torso_d, *legs, *(d for o, (d, _, _) in arms.items() if o != side)]
        nearest = dist < np.min(rivals, axis=0)
        fabric = (par == labels.UPPER) & nearest & (dist <= ARM_HALF_WIDTH * st) & ~beyond
        skin = (par == arm_label[side]) & ~beyond
        region = fabric | skin
        out[region & (s < end)] = labels.UPPER
        out[region & (s >= end)] = arm_label[side]
    return out


# ---------------------------------------------------------------- pants <-> skirt


def set_lower(parsing: np.ndarray, keypoints: np.ndarray, kind: str) -> np.ndarray:
    """Turns pants into a skirt or a skirt into pants.

    Args:
      parsing: uint8 ``[H, W]`` SPT labels.
      keypoints: ``[18, 2]`` ``(y, x)``; needs the torso and both knees
        (ankles optional: a missing one continues the thigh).
      kind: ``"skirt"`` or ``"pants"``.

    Returns:
      uint8 ``[H, W]``: ``skirt`` changes only pants, leg and background
      pixels; ``pants`` changes only skirt and leg pixels.

    Raises:
      EditError: the map holds none of the garment to replace.
    """
    if kind not in LOWERS:
        raise ValueError(f"lower must be one of {LOWERS}, got {kind!r}")
    par, kp = _prepare(parsing, keypoints, f"{kind} edit")
    _need(kp, ("Rhip", "Lhip", "Rkne", "Lkne"), f"{kind} edit")
    source = labels.PANTS if kind == "skirt" else labels.SKIRT
    if not (par == source).any():
        raise EditError(f"{kind} edit: the map has no {labels.SPT_LABELS[source]} pixels to turn into {kind}")
    yy, xx = _grid(par.shape)
    st = _body_scale(kp)
    rhip, lhip, rkne, lkne = (kp[_K[n]] for n in ("Rhip", "Lhip", "Rkne", "Lkne"))
    hip_w = float(np.hypot(*(lhip - rhip)))
    # Outward direction R -> L across the hips (side views: perpendicular to the thigh).
    if hip_w > 1e-3:
        u = (lhip - rhip) / hip_w
    else:
        thigh = (rkne + lkne - rhip - lhip) / 2.0
        u = np.array([-thigh[1], thigh[0]]) / max(float(np.hypot(*thigh)), 1e-6)
    width = max(hip_w, 0.2 * st)
    up = (kp[_K["neck"]] - (rhip + lhip) / 2.0) if not kp_lib.missing_names(kp, ["neck"]) else -(rkne - rhip)
    up = up / max(float(np.hypot(*up)), 1e-6)
    waist = _polygon_mask(par.shape, [rhip - SKIRT_MARGIN_TOP * width * u, lhip + SKIRT_MARGIN_TOP * width * u,
                                      lhip + WAIST_BAND * st * up + SKIRT_MARGIN_TOP * width * u,
                                      rhip + WAIST_BAND * st * up - SKIRT_MARGIN_TOP * width * u])  # fmt: skip
    chains = {s: _chain(yy, xx, _leg_chain(kp, s)) for s in ("R", "L")}
    leg_label = {"R": labels.RIGHT_LEG, "L": labels.LEFT_LEG}
    out = par.copy()
    if kind == "skirt":
        skirt = _polygon_mask(par.shape, [rhip - SKIRT_MARGIN_TOP * width * u, lhip + SKIRT_MARGIN_TOP * width * u,
                                          lkne + SKIRT_MARGIN_HEM * width * u,
                                          rkne - SKIRT_MARGIN_HEM * width * u])  # fmt: skip
        fill = np.isin(par, [labels.PANTS, labels.SKIRT, labels.BACKGROUND, labels.LEFT_LEG, labels.RIGHT_LEG])
        out[skirt & fill] = labels.SKIRT
        out[waist & (par == labels.PANTS)] = labels.SKIRT
        below = (par == labels.PANTS) & ~skirt & ~waist
        right_nearer = chains["R"][0] <= chains["L"][0]
        out[below & right_nearer] = labels.RIGHT_LEG
        out[below & ~right_nearer] = labels.LEFT_LEG
        return out
    # skirt -> pants
    half = max(LEG_HALF_WIDTH_HIPS * hip_w, LEG_HALF_WIDTH_MIN * st)
    pelvis = _polygon_mask(par.shape, [rhip - 0.5 * half * u, lhip + 0.5 * half * u,
                                       lhip + CROTCH * (lkne - lhip), rhip + CROTCH * (rkne - rhip)])  # fmt: skip
    on_legs = np.zeros(par.shape, bool)
    for side, (dist, s, beyond) in chains.items():
        on_legs |= (dist <= half) & ~beyond
        bare = (par == leg_label[side]) & ~beyond & (s < 2.0)
        out[bare] = labels.PANTS
    skirt = par == labels.SKIRT
    keep = on_legs | pelvis | waist
    out[skirt & keep] = labels.PANTS
    out[skirt & ~keep] = labels.BACKGROUND
    return out
