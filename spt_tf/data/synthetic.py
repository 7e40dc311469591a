"""Synthetic people: articulated 2D figures drawn with OpenCV, with exact parsing maps.

Each identity is a fixed body (proportions, skin tone, hair style and colour)
dressed in fixed clothes (upper: sleeveless / short / long sleeves; lower:
pants / shorts / skirt; each with a colour and a texture: solid, stripes,
checks, dots). Each image of an identity has a new pose (joint angles in human
ranges), a view (front, back, side), and a background (plain, gradient, noise).

How a figure is made:
  * A small 3-D skeleton in body units (height 1, ``x`` = the person's left,
    ``y`` down, ``z`` forward) is posed by joint angles, turned by a yaw angle
    and projected orthographically; depth decides the drawing order, so limbs
    occlude each other as they would (painter's algorithm).
  * Every primitive (capsules, polygons, ellipses) is drawn once, without
    anti-aliasing (``cv2.LINE_8``), into one uint8 map holding
    ``label * 16 + material``. The parsing map is ``map >> 4``; the image is
    the materials' colours and textures, with the background where the map is
    0. So the parsing map is exactly the rendered regions.
  * Keypoints are COCO-18 ``(y, x)``; the face points hidden by the view are
    ``-1`` (back view: no nose or eyes; side view: no far eye / far ear). Both
    shoulders and both hips are always visible (the field's pair rule).

Left/right are the person's: in a front view the person's right side is on
the image's left.

Files (``generate``; ``docs/data.md`` documents them)::

  DIR/train/<name>.png  DIR/test/<name>.png   images, names like id00012_p03.png
  DIR/parsing/<stem>.png                      10 SPT labels (spt_tf.labels)
  DIR/annotation-{train,test}.csv             keypoints (spt_tf.data.formats)
  DIR/pairs-{train,test}.csv                  all same-identity ordered pairs
  DIR/identities.csv                          name,identity,split,upper,lower,...

Every image draws its randomness from ``(seed, identity, pose)`` alone, so the
same seed gives the same bytes whatever the number of workers.

Poses from a real annotation file (``poses_from``, ``--poses_from``): each image
takes the 2-D keypoints of an eligible row of the file instead of joint angles
(rows, views and the row choice: :mod:`spt_tf.data.pose_bank`; drawing:
``_build_from_keypoints``); missing joints stay missing. ``docs/data.md``,
"Synthetic people in real poses", has the rules.

CLI::

  python -m spt_tf.data.synthetic --out DIR --identities N --poses_per_identity K \\
      --height H --width W --seed S [--test_fraction F] [--workers J] [--figure PNG]
      [--poses_from ANNOTATION_CSV [--poses_min_limb_joints M]]
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import dataclasses
import functools
import math
import multiprocessing
import os
import time
from collections.abc import Sequence

import cv2
import numpy as np
from absl.flags import argparse_flags

from spt_tf import labels as L
from spt_tf.data import formats, pose_bank

# COCO-18 constants from the TF-free spt_tf.skeleton (spt_tf.geometry would load TensorFlow
# into every generator process); KEYPOINT_NAMES stays importable from this module.
from spt_tf.skeleton import KEYPOINT_NAMES, KP, SKELETON  # noqa: F401

UPPER_KINDS = ("sleeveless", "short", "long")
LOWER_KINDS = ("pants", "shorts", "skirt")
TEXTURES = ("solid", "stripes", "checks", "dots")
HAIR_STYLES = ("buzz", "short", "bob", "long")
VIEWS = ("front", "back", "side")
BACKGROUNDS = ("plain", "gradient", "noise")

# Materials (low 4 bits of the render map). "Shade" variants are darker: limbs
# behind the torso, so overlapping limbs stay distinguishable.
_BG, _SKIN, _SKIN_SH, _HAIR, _UP, _UP_SH, _LO, _LO_SH, _SHOE, _SHOE_SH, _FEATURE = range(11)
_SHADE = 0.78

SKIN_TONES = (
    (255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 94),
    (161, 102, 68), (120, 78, 50), (85, 56, 38),
)  # fmt: skip
HAIR_COLOURS = (
    (28, 24, 20), (70, 45, 25), (125, 82, 45), (215, 185, 115), (160, 70, 30), (165, 165, 165),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Identity:
    """A body and its clothes; lengths in units of body height, colours RGB 0..255."""

    head_rx: float
    head_ry: float
    neck_len: float
    shoulder_half: float
    chest_depth: float
    waist_half: float
    hip_half: float
    hip_joint_half: float
    torso_len: float
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    arm_r: float
    leg_r: float
    foot_len: float
    skin: tuple
    hair_style: str
    hair_colour: tuple
    upper: str
    upper_colours: tuple
    upper_texture: str
    sleeve_end: float  # fraction of the upper arm a short sleeve covers
    lower: str
    lower_colours: tuple
    lower_texture: str
    shorts_end: float  # fraction of the thigh shorts cover
    skirt_len: float
    shoe_colour: tuple
    texture_period: float
    texture_angle: float  # degrees, stripes


@dataclasses.dataclass(frozen=True)
class Pose:
    """Joint angles (degrees), view and framing of one image."""

    view: str
    yaw: float  # 0 = facing the camera, 180 = back, -90 = facing image left
    arms: tuple  # per side (right, left): (abduction, flexion, elbow, medial)
    legs: tuple  # per side (right, left): (abduction, flexion, knee)
    roll: float  # upper body lean in the image plane
    head_roll: float
    height_frac: float  # person height / image height
    x_jitter: float  # in [-1, 1] of the free horizontal margin
    y_jitter: float
    light: float  # brightness factor of the person


@dataclasses.dataclass(frozen=True, eq=False)
class KeypointPose:
    """A pose given by 2-D keypoints (a row of a real annotation file) and the framing."""

    view: str  # front / back / side (spt_tf.data.pose_bank.classify_view)
    yaw: float  # 0 front, 180 back, -90 / 90 side facing the image left / right
    keypoints: np.ndarray  # [18, 2] (y, x) in the source file's pixels, -1 missing
    source: str  # the row's name in the source file
    height_frac: float
    x_jitter: float
    y_jitter: float
    light: float


def _colour(rng, lo=0.15, hi=0.95, sat=(0.2, 0.9)) -> tuple:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(lo, hi))
    return tuple(int(c * 255 + 0.5) for c in rgb)


def _contrast(rng, c) -> tuple:
    """A second texture colour clearly different from ``c``."""
    while True:
        c2 = _colour(rng, 0.1, 1.0, (0.0, 1.0))
        if sum(abs(a - b) for a, b in zip(c, c2)) > 160:
            return c2


def _jitter(rng, c, amount=10) -> tuple:
    return tuple(min(max(int(v + d), 0), 255) for v, d in zip(c, rng.integers(-amount, amount + 1, 3)))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draws a body and clothes."""
    u = rng.uniform
    upper = UPPER_KINDS[rng.integers(3)]
    lower = LOWER_KINDS[rng.integers(3)]
    up_c = _colour(rng)
    lo_c = _colour(rng)
    up_t = TEXTURES[rng.choice(4, p=(0.4, 0.25, 0.2, 0.15))]
    lo_t = TEXTURES[rng.choice(4, p=(0.55, 0.2, 0.15, 0.1))]
    shoulder = u(0.095, 0.125)
    return Identity(
        head_rx=u(0.052, 0.06),
        head_ry=u(0.062, 0.07),
        neck_len=u(0.025, 0.04),
        shoulder_half=shoulder,
        chest_depth=u(0.06, 0.08),
        waist_half=shoulder * u(0.7, 0.85),
        hip_half=u(0.085, 0.105),
        hip_joint_half=u(0.045, 0.06),
        torso_len=u(0.28, 0.31),
        upper_arm=u(0.16, 0.18),
        forearm=u(0.14, 0.16),
        thigh=u(0.22, 0.245),
        shin=u(0.22, 0.245),
        arm_r=u(0.025, 0.033),
        leg_r=u(0.035, 0.045),
        foot_len=u(0.045, 0.06),
        skin=_jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 8),
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hair_colour=_jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 10),
        upper=upper,
        upper_colours=(up_c, _contrast(rng, up_c)),
        upper_texture=up_t,
        sleeve_end=u(0.35, 0.6),
        lower=lower,
        lower_colours=(lo_c, _contrast(rng, lo_c)),
        lower_texture=lo_t,
        shorts_end=u(0.35, 0.7),
        skirt_len=u(0.12, 0.27),
        shoe_colour=_colour(rng, 0.05, 0.9, (0.0, 0.6)),
        texture_period=u(0.05, 0.10),
        texture_angle=float(rng.choice([0.0, 90.0, 45.0, -45.0])),
    )


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draws joint angles in human ranges (degrees), a view and the framing."""
    r = iter(rng.random(32).tolist())  # one draw for all: the generator's hot path

    def u(lo, hi):
        return lo + (hi - lo) * next(r)

    v = next(r)
    view = "front" if v < 0.4 else ("back" if v < 0.65 else "side")
    if view == "front":
        yaw = u(-20, 20)
    elif view == "back":
        yaw = 180 + u(-20, 20)
    else:
        yaw = (1 if next(r) < 0.5 else -1) * (90 + u(-15, 15))
    arms = []
    for _ in range(2):
        # Mostly hanging arms (skewed towards small abduction / elbow angles); a few raised.
        raised = next(r) < 0.07
        abduction = u(100, 165) if raised else 3 + 50 * next(r) ** 1.9
        arms.append((abduction, u(-35, 50), 140 * next(r) ** 2, u(0.0, 1.2)))
    if next(r) < 0.4:  # walking stride: one leg forward, the other back
        s = u(5, 30)
        flex = (s, -s) if next(r) < 0.5 else (-s, s)
    else:
        flex = (u(-10, 20), u(-10, 20))
    legs = tuple((u(0, 14), f, u(0, 25) + (u(0, 35) if f > 12 or f < -8 else 0.0)) for f in flex)
    return Pose(
        view=view,
        yaw=yaw,
        arms=tuple(arms),
        legs=legs,
        roll=u(-5, 5),
        head_roll=u(-10, 10),
        height_frac=u(0.84, 0.95),
        x_jitter=u(-1, 1),
        y_jitter=u(-1, 1),
        light=u(0.92, 1.08),
    )


def sample_background(rng: np.random.Generator, height: int, width: int, avoid=()) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB: plain, gradient or smooth noise, away from the ``avoid`` colours."""
    kind = BACKGROUNDS[rng.integers(3)]
    for _ in range(20):  # colours far from the person's, so the figure stands out
        base = _colour(rng, 0.1, 0.95, (0.0, 0.7))
        if all(sum(abs(a - b) for a, b in zip(base, c)) > 90 for c in avoid):
            break
    if kind == "plain":
        return np.broadcast_to(np.array(base, np.uint8), (height, width, 3)).copy()
    base = np.array(base, np.float32)
    if kind == "gradient":
        other = base + rng.uniform(-60, 60, 3).astype(np.float32)
        vertical = rng.random() < 0.7
        t = np.linspace(0.0, 1.0, height if vertical else width, dtype=np.float32)
        ramp = np.clip(base + t[:, None] * (other - base) + 0.5, 0, 255).astype(np.uint8)
        bg = ramp[:, None, :] if vertical else ramp[None, :, :]
        return np.ascontiguousarray(np.broadcast_to(bg, (height, width, 3)))
    # Smooth blotches, mostly in brightness (real walls and streets), plus fine grain.
    coarse = rng.normal(0, 28, (4, 4, 1)) + rng.normal(0, 8, (4, 4, 3)) + base
    smooth = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.integers(-6, 7, (height, width, 1), dtype=np.int16)
    return np.clip(smooth.astype(np.int16) + grain, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- geometry


def _limb(lateral, abduction, flexion, bend_deg, bend_dir):
    """Unit directions (3-D) of the proximal and distal segments of a limb."""
    a, f = math.radians(abduction), math.radians(flexion)
    d1 = (lateral * math.sin(a), math.cos(a) * math.cos(f), math.cos(a) * math.sin(f))
    # The distal segment bends from d1 towards bend_dir (orthogonalised to d1).
    dot = sum(p * q for p, q in zip(bend_dir, d1))
    b = [p - dot * q for p, q in zip(bend_dir, d1)]
    n = math.sqrt(sum(p * p for p in b))
    if n < 1e-6:
        b, n = [0.0, -1.0, 0.0], 1.0
    b = [p / n for p in b]
    e = math.radians(bend_deg)
    d2 = tuple(math.cos(e) * p + math.sin(e) * q for p, q in zip(d1, b))
    return d1, d2


def _add(p, d, s):
    return (p[0] + d[0] * s, p[1] + d[1] * s, p[2] + d[2] * s)


def _lerp(a, b, t):
    """The point at fraction ``t`` from ``a`` to ``b`` (2-D or 3-D)."""
    return tuple(x + (y - x) * t for x, y in zip(a, b))


class _Scene:
    """Primitives in body units (x right, y down) in drawing order, each with one map value.

    Shapes are stored in flat lists and transformed to pixels in one numpy pass
    (drawing is the generator's hot loop).
    """

    def __init__(self):
        self.items = []  # (kind, index, value): kind 0 capsule, 1 polygon, 2 ellipse
        self.caps = []  # (x0, y0, x1, y1, r0, r1)
        self.polys = []  # [(x, y), ...]
        self.ells = []  # (cx, cy, ax, ay, angle_deg)
        self.frames = []  # per item: the garment texture's frame (x0, y0, x1, y1, lateral), or None

    def capsule(self, p0, p1, r0, r1, label, material, frame=None):
        self.items.append((0, len(self.caps), label * 16 + material))
        self.caps.append((p0[0], p0[1], p1[0], p1[1], r0, r1))
        self.frames.append(frame or (p0[0], p0[1], p1[0], p1[1], 1.0))

    def poly(self, pts, label, material, frame=None):
        self.items.append((1, len(self.polys), label * 16 + material))
        self.polys.append(pts)
        self.frames.append(frame)

    def ellipse(self, c, axes, angle, label, material, frame=None):
        self.items.append((2, len(self.ells), label * 16 + material))
        self.ells.append((c[0], c[1], axes[0], axes[1], angle))
        self.frames.append(frame)

    def frame_array(self, scale, ox, oy) -> np.ndarray:
        """``[1 + items, 5]`` float32: row ``1 + i`` is item ``i``'s texture frame in pixels,
        its origin ``(x, y)``, the unit direction ``(dx, dy)`` of its axis (a capsule's: from
        its first end to its second; down the image where the axis has no length) and the
        lateral foreshortening (a turned torso shows its width, and its pattern, narrower);
        row 0 and items without a frame: origin 0, direction down, no foreshortening.
        """
        out = np.zeros((1 + len(self.frames), 5), np.float32)
        out[:, 3] = out[:, 4] = 1.0
        for i, f in enumerate(self.frames):
            if f is None:
                continue
            dx, dy = _unit((f[2] - f[0], f[3] - f[1]), (0.0, 1.0))
            out[1 + i] = (f[0] * scale + ox, f[1] * scale + oy, dx, dy, f[4])
        return out

    def bbox(self):
        c = np.array(self.caps).reshape(-1, 6)
        e = np.array(self.ells).reshape(-1, 5)
        p = np.array([q for poly in self.polys for q in poly]).reshape(-1, 2)
        em = np.maximum(e[:, 2], e[:, 3])
        xs = np.concatenate([c[:, 0] - c[:, 4], c[:, 0] + c[:, 4], c[:, 2] - c[:, 5],
                             c[:, 2] + c[:, 5], e[:, 0] - em, e[:, 0] + em, p[:, 0]])  # fmt: skip
        ys = np.concatenate([c[:, 1] - c[:, 4], c[:, 1] + c[:, 4], c[:, 3] - c[:, 5],
                             c[:, 3] + c[:, 5], e[:, 1] - em, e[:, 1] + em, p[:, 1]])  # fmt: skip
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    def draw(self, canvas, scale, ox, oy, values=None):
        """Draws into ``canvas`` (uint8 [H, W]) at ``pixel = body * scale + (ox, oy)``.

        ``values``: one uint8 value per item instead of the items' map values, 0 for an item
        left out (the texture frames' index map is drawn with the same shapes and order).
        """
        # 4 fractional bits (cv2 shift=4): sub-pixel shapes, still no anti-aliasing.
        off = np.array([ox, oy]) * 16
        f = 16.0 * scale
        c = np.array(self.caps).reshape(-1, 6)
        a = c[:, 0:2] * f + off
        b = c[:, 2:4] * f + off
        ra = np.maximum(np.rint(c[:, 4] * f), 8)
        rb = np.maximum(np.rint(c[:, 5] * f), 8)
        d = b - a
        n = np.hypot(d[:, 0], d[:, 1])
        normal = d[:, ::-1] * (np.array([-1.0, 1.0]) / np.maximum(n, 1e-9)[:, None])
        na, nb = normal * ra[:, None], normal * rb[:, None]
        quads = np.empty((len(c), 4, 2))
        quads[:, 0], quads[:, 1], quads[:, 2], quads[:, 3] = a + na, b + nb, b - nb, a - na
        quads = np.rint(quads).astype(np.int32)
        a_i, b_i = np.rint(a).astype(int).tolist(), np.rint(b).astype(int).tolist()
        ra_i, rb_i, moving = ra.astype(int).tolist(), rb.astype(int).tolist(), (n > 0).tolist()
        e = np.array(self.ells).reshape(-1, 5)
        e_c = np.rint(e[:, :2] * f + off).astype(int).tolist()
        e_ax = np.maximum(np.rint(e[:, 2:4] * f), 8).astype(int).tolist()
        line = cv2.LINE_8
        for n, (kind, i, value) in enumerate(self.items):
            if values is not None:
                value = values[n]
                if value == 0:  # not drawn
                    continue
            if kind == 0:
                cv2.circle(canvas, a_i[i], ra_i[i], value, -1, line, 4)
                cv2.circle(canvas, b_i[i], rb_i[i], value, -1, line, 4)
                if moving[i]:
                    cv2.fillConvexPoly(canvas, quads[i], value, line, 4)
            elif kind == 1:
                pts = np.rint(np.array(self.polys[i]) * f + off).astype(np.int32)
                cv2.fillPoly(canvas, [pts], value, line, 4)
            else:
                cv2.ellipse(canvas, e_c[i], e_ax[i], self.ells[i][4], 0, 360, value, -1, line, 4)


# Face points on the head: position and outward normal in head radii (x left, y down,
# z forward, around the head centre) and the facing threshold below which the view hides
# the point (``_build``).
_FACE_POINTS = {
    "nose": ((0.0, 0.22, 1.0), (0.0, 0.0, 1.0), -0.2),
    "Leye": ((0.36, -0.05, 0.82), (0.35, 0.0, 0.94), 0.1),
    "Reye": ((-0.36, -0.05, 0.82), (-0.35, 0.0, 0.94), 0.1),
    "Lear": ((1.0, 0.05, -0.1), (1.0, 0.0, -0.1), -0.5),
    "Rear": ((-1.0, 0.05, -0.1), (-1.0, 0.0, -0.1), -0.5),
}


# Shapes both builders draw (``_build`` from joint angles, ``_build_from_keypoints`` from
# 2-D keypoints): each builder computes the points in body units, these make the primitives.


def _as_is(u, v):
    return (u, v)


def _arm_segment(ident: Identity, label, shade, p0, p1, r0, r1, which, to_2d=lambda p: p):
    """An arm segment's skin capsule and the upper garment's sleeve over it.

    ``p0``, ``p1`` are the segment's ends as ``to_2d`` takes them (``_build``: 3-D points,
    so the sleeve's end is placed in 3-D before the projection); ``which`` is the segment
    (upper, fore, hand); ``shade``: behind the torso.
    """
    skin, cloth = (_SKIN_SH, _UP_SH) if shade else (_SKIN, _UP)
    prims = [("capsule", (to_2d(p0), to_2d(p1), r0, r1), label, skin)]
    cover = None  # the fraction of the segment the sleeve covers
    if ident.upper == "short" and which == "upper":
        cover = ident.sleeve_end
    elif ident.upper == "long" and which in ("upper", "fore"):
        cover = 1.0 if which == "upper" else 0.95
    if cover is not None:
        rr = ident.arm_r * 0.3
        re = r0 + (r1 - r0) * cover
        prims.append(("capsule", (to_2d(p0), to_2d(_lerp(p0, p1, cover)), r0 + rr, re + rr), L.UPPER, cloth))
    return prims


def _leg(ident: Identity, label, shade, hip, kne, ank, toe, shorts_end):
    """A leg's skin, lower garment (pants or shorts) and shoe capsules, 2-D points in body units.

    ``kne`` None: the top of the thigh only (under the lower garment); ``ank`` None: no
    shin and no shoe (``toe`` unused); ``shorts_end`` is where shorts end on the thigh.
    """
    skin, cloth, shoe = (_SKIN_SH, _LO_SH, _SHOE_SH) if shade else (_SKIN, _LO, _SHOE)
    rt, rk, ra = ident.leg_r, ident.leg_r * 0.75, ident.leg_r * 0.55
    loose = ident.leg_r * 0.2
    prims = []
    if kne is None:
        prims.append(("capsule", (hip, hip, rt, rt), label, skin))
        if ident.lower in ("pants", "shorts"):
            prims.append(("capsule", (hip, hip, rt + loose, rt + loose), L.PANTS, cloth))
        return prims
    prims.append(("capsule", (hip, kne, rt, rk), label, skin))
    if ank is not None:
        prims.append(("capsule", (kne, ank, rk, ra), label, skin))
    if ident.lower == "pants":
        prims.append(("capsule", (hip, kne, rt + loose, rk + loose), L.PANTS, cloth))
        if ank is not None:
            prims.append(("capsule", (kne, ank, rk + loose, ra + loose), L.PANTS, cloth))
    elif ident.lower == "shorts":
        re = rt + (rk - rt) * ident.shorts_end + loose
        prims.append(("capsule", (hip, shorts_end, rt + loose, re), L.PANTS, cloth))
    if ank is not None:
        prims.append(("capsule", (ank, toe, ra * 1.1, ra * 1.1), label, shoe))
    return prims


def _lower_garment(ident: Identity, w_hip, legs, to_body=_as_is):
    """The lower garment's body: pants / shorts from the waist to the crotch, or the skirt.

    Points are torso coordinates ``(u, v)`` (lateral, down from the neck; the mid-hip
    point at ``v = torso_len``) that ``to_body`` maps to body units; ``w_hip`` is the
    half width at the hips; ``legs`` holds each leg's joints (hip, then knee and ankle
    where drawn) in torso coordinates: the skirt's hem reaches over both legs.
    """
    hip_y = ident.torso_len
    # The texture's frame: the torso's axis, foreshortened as the hips' projected width.
    frame = (*to_body(0.0, 0.0), *to_body(0.0, hip_y), min(max(w_hip / ident.hip_half, 0.3), 1.0))
    if ident.lower in ("pants", "shorts"):
        crotch = hip_y + 0.06
        quad = [(-w_hip, hip_y - 0.05), (w_hip, hip_y - 0.05), (w_hip * 0.9, crotch),
                (-w_hip * 0.9, crotch)]  # fmt: skip
        return [("poly", [to_body(*q) for q in quad], L.PANTS, _LO, frame)]
    # Skirt: a trapezoid from the waist to the hem, wide enough for both legs.
    hem_y = hip_y + ident.skirt_len
    xs = []
    for chain in legs:
        for a, b in zip(chain, chain[1:]):
            if (a[1] - hem_y) * (b[1] - hem_y) <= 0 and a[1] != b[1]:
                t = (hem_y - a[1]) / (b[1] - a[1])
                xs.append(a[0] + t * (b[0] - a[0]))
        xs.append(chain[1][0] if len(chain) > 1 and chain[1][1] < hem_y else chain[0][0])
    margin = ident.leg_r * 1.4
    lo_x = min(min(xs) - margin, -w_hip - 0.01)
    hi_x = max(max(xs) + margin, w_hip + 0.01)
    quad = [(-w_hip, hip_y - 0.05), (w_hip, hip_y - 0.05), (hi_x, hem_y), (lo_x, hem_y)]
    return [("poly", [to_body(*q) for q in quad], L.SKIRT, _LO, frame)]


def _torso(ident: Identity, ws, ww, wh, wn, to_body=_as_is):
    """The upper garment's torso polygon and the capsule rounding its shoulders.

    Half widths (already projected) at the shoulders ``ws``, waist ``ww``, hem ``wh`` and
    neck ``wn``; points in torso coordinates as in ``_lower_garment``.
    """
    hip_y = ident.torso_len
    hem = hip_y + 0.035
    rs = min(ident.arm_r * 1.2, ws * 0.5)  # rounded shoulders: a capsule over the top corners
    torso = [
        to_body(-wn, -0.01), to_body(-ws, rs), to_body(-ws, 0.07), to_body(-ww, hip_y * 0.62),
        to_body(-wh, hem), to_body(wh, hem), to_body(ww, hip_y * 0.62), to_body(ws, 0.07),
        to_body(ws, rs), to_body(wn, -0.01),
    ]  # fmt: skip
    shoulders = (to_body(-ws + rs, rs), to_body(ws - rs, rs), rs, rs)
    # The texture's frame: neck to mid-hip, foreshortened as the shoulders' projected width.
    lateral = min(max(ws / (ident.shoulder_half + ident.arm_r * 0.5), 0.3), 1.0)
    frame = (*to_body(0.0, 0.0), *to_body(0.0, hip_y), lateral)
    return [("poly", torso, L.UPPER, _UP, frame), ("capsule", shoulders, L.UPPER, _UP, frame)]


def _head(groups, ident: Identity, head_pt, angle_deg, cos_t, sin_t, long_end, face_marks=(), dots=()):
    """Adds the head to the drawing groups: hair cap, face, mouth (group 7), and bob or long
    hair behind the head (group 0, 6 or 8 by the view).

    ``head_pt`` maps head-local ``(x, y, z)`` in head radii (around the head centre) to
    body units; ``angle_deg`` is the head's tilt in the image; ``long_end`` is where long
    hair ends (body units); ``face_marks`` are drawn on the face before the mouth, when the
    face shows; ``dots`` last, whatever the view.
    """
    rx, ry = ident.head_rx, ident.head_ry
    fx = sin_t  # screen-x component of the facing direction
    style = ident.hair_style
    head_items = []
    back_hair = None
    if style in ("bob", "long"):
        end = head_pt((0.0, 0.9, 0.0)) if style == "bob" else long_end
        start = head_pt((-fx * 0.25, -0.2, 0.0))
        end = (end[0] - fx * 0.25 * rx, end[1])
        hw = rx * (1.15 - 0.2 * abs(fx))
        back_hair = [("capsule", (start, end, hw, hw * 0.9), L.HAIR, _HAIR)]
    cap_scale = 1.0 if style == "buzz" else 1.1
    cap_c = head_pt((-fx * 0.1, -0.1 if style == "buzz" else -0.14, 0.0))
    head_items.append(("ellipse", (cap_c, (rx * cap_scale, ry * 1.0), angle_deg), L.HAIR, _HAIR))
    if cos_t > -0.3:  # the face shows from the front and the side (|yaw| <= 105)
        top = -0.55 if style == "buzz" else -0.62
        face_c = head_pt((0.32 * fx, (top + 1.0) / 2, 0.0))
        axes = (rx * (0.86 - 0.12 * abs(fx)), ry * (1.0 - top) / 2)
        head_items.append(("ellipse", (face_c, axes, angle_deg), L.FACE, _SKIN))
        head_items.extend(face_marks)
        if cos_t > 0.5:
            m0, m1 = head_pt((-0.25, 0.55, 0.9)), head_pt((0.25, 0.55, 0.9))
            head_items.append(("capsule", (m0, m1, rx * 0.07, rx * 0.07), L.FACE, _FEATURE))
    head_items.extend(dots)
    groups[7].append((0.0, head_items))
    if back_hair:
        g = 0 if cos_t > 0.25 else (8 if cos_t < -0.25 else 6)
        groups[g].append((0.0, back_hair))


def _build(ident: Identity, pose: Pose):
    """Posed primitives and keypoints in body units (x right, y down, neck at the origin)."""
    th = math.radians(pose.yaw)
    cos_t, sin_t = math.cos(th), math.sin(th)

    def proj(p):
        return (p[0] * cos_t + p[2] * sin_t, p[1])

    def depth(p):
        return -p[0] * sin_t + p[2] * cos_t

    # Upper-body lean: a rotation in the image plane about the mid-hip point.
    pivot = (0.0, ident.torso_len)
    cr, sr = math.cos(math.radians(pose.roll)), math.sin(math.radians(pose.roll))

    def lean(x, y):
        dx, dy = x - pivot[0], y - pivot[1]
        return (pivot[0] + cr * dx - sr * dy, pivot[1] + sr * dx + cr * dy)

    def up(p):  # project a 3-D upper-body point and lean it
        return lean(*proj(p))

    kp = [None] * 18
    neck3 = (0.0, 0.0, 0.0)
    kp[KP["neck"]] = up(neck3)

    groups = {g: [] for g in range(10)}  # drawing groups (_assemble)

    # --- arms ----------------------------------------------------------------------------
    torso_depth = -0.01
    sh_lab = {-1: L.RIGHT_ARM, 1: L.LEFT_ARM}
    for side, lateral, names in ((0, -1, ("Rsho", "Relb", "Rwri")), (1, 1, ("Lsho", "Lelb", "Lwri"))):
        abd, flex, elbow, medial = pose.arms[side]
        sho = (lateral * ident.shoulder_half, 0.015, 0.0)
        d1, d2 = _limb(lateral, abd, flex, elbow, (-lateral * medial, 0.0, 1.0))
        elb = _add(sho, d1, ident.upper_arm)
        wri = _add(elb, d2, ident.forearm)
        hand = _add(wri, d2, 0.03)
        for n, p in zip(names, (sho, elb, wri)):
            kp[KP[n]] = up(p)
        lab = sh_lab[lateral]
        segs = (
            (sho, elb, ident.arm_r, ident.arm_r * 0.85, "upper"),
            (elb, wri, ident.arm_r * 0.85, ident.arm_r * 0.7, "fore"),
            (wri, hand, ident.arm_r * 0.8, ident.arm_r * 0.8, "hand"),
        )
        for p0, p1, r0, r1, which in segs:
            dep = 0.5 * (depth(p0) + depth(p1))
            shade = dep < torso_depth
            groups[9 if not shade else 1].append((dep, _arm_segment(ident, lab, shade, p0, p1, r0, r1, which, up)))

    # --- legs ----------------------------------------------------------------------------
    hip_y = ident.torso_len
    leg_lab = {-1: L.RIGHT_LEG, 1: L.LEFT_LEG}
    leg_pts = {}
    for side, lateral, names in ((0, -1, ("Rhip", "Rkne", "Rank")), (1, 1, ("Lhip", "Lkne", "Lank"))):
        abd, flex, knee = pose.legs[side]
        hip = (lateral * ident.hip_joint_half, hip_y, 0.0)
        d1, d2 = _limb(lateral, abd, flex, knee, (0.0, 0.0, -1.0))
        kne = _add(hip, d1, ident.thigh)
        ank = _add(kne, d2, ident.shin)
        toe = _add(ank, (0.0, 0.35, 1.0), ident.foot_len)
        for n, p in zip(names, (hip, kne, ank)):
            kp[KP[n]] = proj(p)
        leg_pts[lateral] = (proj(hip), proj(kne), proj(ank))
        dep = sum(depth(p) for p in (hip, kne, ank)) / 3
        shorts_end = proj(_add(hip, d1, ident.thigh * ident.shorts_end))
        prims = _leg(ident, leg_lab[lateral], dep < -0.02, *leg_pts[lateral], proj(toe), shorts_end)
        groups[2].append((dep, prims))

    def width(a, d):  # projected half width of a torso cross-section ellipse
        return math.sqrt((a * cos_t) ** 2 + (d * sin_t) ** 2)

    # --- lower garment body (body units are the torso coordinates here: no lean) ----------
    w_hip = width(ident.hip_half, ident.chest_depth)
    groups[3].append((0.0, _lower_garment(ident, w_hip, leg_pts.values())))

    # --- neck and torso ---------------------------------------------------------------------
    head_c3 = (0.0, -ident.neck_len - ident.head_ry * 0.85, 0.0)
    neck_r = ident.head_rx * 0.45
    groups[4].append((0.0, [("capsule", (up(neck3), up(head_c3), neck_r, neck_r), L.FACE, _SKIN)]))
    ws = width(ident.shoulder_half + ident.arm_r * 0.5, ident.chest_depth)
    ww = width(ident.waist_half, ident.chest_depth * 0.85)
    wh = width(ident.hip_half * 1.02, ident.chest_depth)
    wn = width(neck_r * 1.6, neck_r * 1.6)
    # Widths are already projected: only the lean applies.
    groups[5].append((0.0, _torso(ident, ws, ww, wh, wn, lean)))

    # --- head ------------------------------------------------------------------------------
    rx, ry = ident.head_rx, ident.head_ry
    hc = up(head_c3)
    hr = math.radians(pose.head_roll)

    def head_pt(local):  # local (x, y, z) in head radii, around the head centre
        p = (local[0] * rx, local[1] * ry, local[2] * rx)
        x, y = p[0] * cos_t + p[2] * sin_t, p[1]
        a = math.radians(pose.roll) + hr
        ca, sa = math.cos(a), math.sin(a)
        return (hc[0] + ca * x - sa * y, hc[1] + sa * x + ca * y)

    def facing(normal):  # depth component of a unit normal: > 0 faces the camera
        return -normal[0] * sin_t + normal[2] * cos_t

    visible = {}
    for n, (pos, normal, thresh) in _FACE_POINTS.items():
        visible[n] = facing(normal) > thresh
        kp[KP[n]] = head_pt(pos) if visible[n] else None

    marks = []  # on the face: the nose in profile, the visible eyes
    if visible["nose"] and abs(sin_t) > 0.5:
        marks.append(("capsule", (kp[KP["nose"]], kp[KP["nose"]], rx * 0.16, rx * 0.16), L.FACE, _SKIN))
    for eye in ("Leye", "Reye"):
        if visible[eye]:
            e = kp[KP[eye]]
            marks.append(("capsule", (e, e, rx * 0.13, rx * 0.13), L.FACE, _FEATURE))
    _head(groups, ident, head_pt, pose.roll + pose.head_roll, cos_t, sin_t, up((0.0, 0.14, 0.0)), marks)
    return _assemble(groups), kp


def _assemble(groups) -> _Scene:
    """The scene of the drawing groups, in order; within a group by depth, far first.

    Groups: 0 hair behind (front view), 1 arm segments behind the torso, 2 legs (far
    first), 3 lower garment, 4 neck, 5 torso, 6 hair (side view), 7 head, 8 hair over the
    back (back view), 9 arm segments in front of the torso (far first).
    """
    scene = _Scene()
    for g in range(10):
        for _, prims in sorted(groups[g], key=lambda t: t[0]):
            for kind, data, label, material, *frame in prims:
                frame = frame[0] if frame else None
                if kind == "capsule":
                    scene.capsule(*data, label, material, frame)
                elif kind == "poly":
                    scene.poly(data, label, material, frame)
                else:
                    scene.ellipse(*data, label, material, frame)
    return scene


def _unit(v, fallback):
    n = math.hypot(v[0], v[1])
    return (v[0] / n, v[1] / n) if n > 1e-9 else fallback


def _build_from_keypoints(ident: Identity, pose: KeypointPose):
    """Primitives and keypoints in body units (as ``_build``) from 2-D keypoints.

    The keypoints are scaled so that the neck to mid-hip distance is the identity's torso
    length (one scale: the row's aspect is kept); limbs are capsules between the given
    joints with the identity's radii and garments; the torso, lower garment and neck are
    ``_build``'s shapes in the torso's own axes (neck to mid-hip), widened where the row's
    shoulders or hips lie farther out; the head sits where the face points are.

    Missing joints stay missing and are drawn as hidden ones: a limb ends at its last
    present joint (no forearm without a wrist, no shin or shoe without an ankle); a
    missing elbow or knee between two present joints is drawn on the straight line, at the
    identity's segment proportion, but not written. Every present keypoint lies on a drawn
    primitive: each face point gets a small dot (eyes dark, nose and ears skin; in the back
    view, nose and eyes are hair dots on the back of the head). The view (``pose.yaw``)
    decides the depth order (in a side view the far arm is behind the torso and shaded,
    the far leg shaded), the face drawing and the hair as in ``_build``.
    """
    src = np.asarray(pose.keypoints, np.float64)
    vis = pose_bank.present(src)
    for n in pose_bank.REQUIRED:
        if not vis[KP[n]]:
            raise ValueError(f"keypoint pose {pose.source!r} lacks {n} (not an eligible row)")
    ny, nx = src[KP["neck"]]
    my, mx = 0.5 * (src[KP["Rhip"]] + src[KP["Lhip"]])
    s = ident.torso_len / math.hypot(my - ny, mx - nx)
    kp = [None] * 18
    for j in range(18):
        if vis[j]:
            kp[j] = (float((src[j, 1] - nx) * s), float((src[j, 0] - ny) * s))
    # Torso axes: d from the neck (origin) to the mid-hip point, e the lateral direction
    # (the image right for an upright torso); (u, v) are torso coordinates along (e, d).
    dx, dy = _unit(((mx - nx) * s, (my - ny) * s), (0.0, 1.0))
    ex, ey = dy, -dx

    def loc(u, v):  # torso coordinates -> body units
        return (u * ex + v * dx, u * ey + v * dy)

    def lateral_of(p):
        return p[0] * ex + p[1] * ey

    th = math.radians(pose.yaw)
    cos_t, sin_t = math.cos(th), math.sin(th)
    groups = {g: [] for g in range(10)}

    # --- arms ----------------------------------------------------------------------------
    torso_depth = -0.01
    arm_lab = {-1: L.RIGHT_ARM, 1: L.LEFT_ARM}
    for lateral, names in ((-1, ("Rsho", "Relb", "Rwri")), (1, ("Lsho", "Lelb", "Lwri"))):
        sho, elb, wri = (kp[KP[n]] for n in names)
        if elb is None and wri is not None:
            elb = _lerp(sho, wri, ident.upper_arm / (ident.upper_arm + ident.forearm))
        r = ident.arm_r
        segs = []
        if elb is not None:
            segs.append((sho, elb, r, r * 0.85, "upper"))
        else:  # no arm below the shoulder: its top only, under the garment as a sleeve's
            segs.append((sho, sho, r, r, "upper"))
        if wri is not None:
            along = _unit((wri[0] - elb[0], wri[1] - elb[1]), (dx, dy))
            hand = (wri[0] + along[0] * 0.03, wri[1] + along[1] * 0.03)
            segs.append((elb, wri, r * 0.85, r * 0.7, "fore"))
            segs.append((wri, hand, r * 0.8, r * 0.8, "hand"))
        # Depth of the arm's side: 0 in the front and back views (arms over the torso), the
        # near arm in front and the far one behind the torso in a side view.
        dep = -lateral * sin_t * ident.shoulder_half
        shade = dep < torso_depth
        for p0, p1, r0, r1, which in segs:
            groups[9 if not shade else 1].append(
                (dep, _arm_segment(ident, arm_lab[lateral], shade, p0, p1, r0, r1, which))
            )

    # --- legs ----------------------------------------------------------------------------
    leg_lab = {-1: L.RIGHT_LEG, 1: L.LEFT_LEG}
    leg_local = {}
    for lateral, names in ((-1, ("Rhip", "Rkne", "Rank")), (1, ("Lhip", "Lkne", "Lank"))):
        hip, kne, ank = (kp[KP[n]] for n in names)
        if kne is None and ank is not None:
            kne = _lerp(hip, ank, ident.thigh / (ident.thigh + ident.shin))
        chain = [p for p in (hip, kne, ank) if p is not None]
        leg_local[lateral] = [(lateral_of(p), p[0] * dx + p[1] * dy) for p in chain]
        # Side view: the far leg first and shaded; front and back: the leg whose lowest
        # point is lower in the image is the nearer one (the camera looks down on people).
        dep = -lateral * sin_t * ident.hip_joint_half + 0.01 * max(p[1] for p in chain)
        # No knee: the leg's top only; the foot points where the person faces, down in the image.
        shorts_end = None if kne is None else _lerp(hip, kne, ident.shorts_end)
        toe = None if ank is None else (ank[0] + sin_t * ident.foot_len, ank[1] + 0.35 * ident.foot_len)
        groups[2].append((dep, _leg(ident, leg_lab[lateral], dep < -0.02, hip, kne, ank, toe, shorts_end)))

    # Widths of the torso shapes: the identity's, projected with the turn the row's
    # shoulders show (as ``_build``'s ``width``), widened to reach the row's joints.
    u_sho = [lateral_of(kp[KP[n]]) for n in ("Rsho", "Lsho")]
    u_hip = [lateral_of(kp[KP[n]]) for n in ("Rhip", "Lhip")]
    c = min(abs(u_sho[1] - u_sho[0]) / (2 * ident.shoulder_half), 1.0)
    sn = math.sqrt(1.0 - c * c)

    def width(a, d):
        return math.sqrt((a * c) ** 2 + (d * sn) ** 2)

    # --- lower garment body ---------------------------------------------------------------
    w_hip = max(width(ident.hip_half, ident.chest_depth),
                max(map(abs, u_hip)) + ident.hip_half - ident.hip_joint_half)  # fmt: skip
    groups[3].append((0.0, _lower_garment(ident, w_hip, leg_local.values(), loc)))

    # --- neck and torso ---------------------------------------------------------------------
    rx, ry = ident.head_rx, ident.head_ry
    face = [n for n in _FACE_POINTS if kp[KP[n]] is not None]
    hc = None
    if face:  # the head centre: the face points less their offsets for this view
        offs = []
        for n in face:
            (lx, ly, lz), _, _ = _FACE_POINTS[n]
            offs.append((lx * rx * cos_t + lz * rx * sin_t, ly * ry))
        hc = (float(np.mean([kp[KP[n]][0] - o[0] for n, o in zip(face, offs)])),
              float(np.mean([kp[KP[n]][1] - o[1] for n, o in zip(face, offs)])))  # fmt: skip
        if hc[0] * dx + hc[1] * dy > -0.5 * ry:  # not above the neck: face points unusable
            hc = None
    if hc is None:
        hc = loc(0.0, -ident.neck_len - ry * 0.85)
    neck_r = rx * 0.45
    groups[4].append((0.0, [("capsule", ((0.0, 0.0), hc, neck_r, neck_r), L.FACE, _SKIN)]))
    ws = max(width(ident.shoulder_half + ident.arm_r * 0.5, ident.chest_depth),
             max(map(abs, u_sho)) + ident.arm_r * 0.5)  # fmt: skip
    ww = max(ws * ident.waist_half / (ident.shoulder_half + ident.arm_r * 0.5),
             ident.chest_depth * 0.85)  # fmt: skip
    wh = max(width(ident.hip_half * 1.02, ident.chest_depth), w_hip * 1.02)
    wn = neck_r * 1.6
    groups[5].append((0.0, _torso(ident, ws, ww, wh, wn, loc)))

    # --- head ------------------------------------------------------------------------------
    # Tilt: the neck -> head centre direction against the image's up, at most 45 degrees.
    a = max(min(math.atan2(hc[0], -hc[1]), math.pi / 4), -math.pi / 4)
    ca, sa = math.cos(a), math.sin(a)

    def head_pt(local):  # local (x, y, z) in head radii, around the head centre
        x, y = (local[0] * cos_t + local[2] * sin_t) * rx, local[1] * ry
        return (hc[0] + ca * x - sa * y, hc[1] + sa * x + ca * y)

    dots = []  # a dot on every present face point, so that it lies on the head
    for n in face:
        p = kp[KP[n]]
        if n in ("Lear", "Rear"):
            dots.append(("capsule", (p, p, rx * 0.25, rx * 0.25), L.FACE, _SKIN))
        elif cos_t <= -0.3:  # back view: the row's nose or eyes are on the back of the head
            dots.append(("capsule", (p, p, rx * 0.16, rx * 0.16), L.HAIR, _HAIR))
        elif n == "nose":
            dots.append(("capsule", (p, p, rx * 0.16, rx * 0.16), L.FACE, _SKIN))
        else:
            dots.append(("capsule", (p, p, rx * 0.13, rx * 0.13), L.FACE, _FEATURE))
    _head(groups, ident, head_pt, math.degrees(a), cos_t, sin_t, loc(0.0, 0.14), dots=dots)
    return _assemble(groups), kp


# ---------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _texture(kind, ys, xs, period, angle):
    """Boolean pattern (True = second colour) at pixel coordinates relative to an anchor."""
    if kind == "solid":
        return np.zeros(ys.shape, bool)
    if kind == "stripes":
        a = math.radians(angle)
        t = (ys * math.cos(a) + xs * math.sin(a)) / period
        return (t - np.floor(t)) < 0.45
    if kind == "checks":
        return ((np.floor(ys / period) + np.floor(xs / period)) % 2) == 1
    # dots on a grid
    fy, fx = ys / period, xs / period
    dy, dx = fy - np.floor(fy) - 0.5, fx - np.floor(fx) - 0.5
    return dy * dy + dx * dx < 0.09


def render(ident: Identity, pose: Pose, background: np.ndarray):
    """Renders one person.

    Args:
      ident: the body and clothes.
      pose: the pose, view and framing.
      background: uint8 ``[H, W, 3]`` RGB; its size is the image size.

    Returns:
      image uint8 ``[H, W, 3]`` RGB; labels uint8 ``[H, W]`` in 0..9 (0 exactly
      where the image is the background); keypoints float32 ``[18, 2]`` ``(y, x)``
      integer pixels inside the image, ``-1`` for joints hidden by the view.
    """
    return _render_scene(ident, pose, background, *_build(ident, pose))


def _render_scene(ident, pose, background, scene, kp):
    h, w = background.shape[:2]
    x0, y0, x1, y1 = scene.bbox()
    bw, bh = x1 - x0, y1 - y0
    scale = min(pose.height_frac * (h - 1) / bh, 0.97 * (w - 1) / bw)
    ox = (w - 1 - bw * scale) / 2 * (1 + 0.8 * pose.x_jitter) - x0 * scale
    oy = (h - 1 - bh * scale) / 2 * (1 + 0.8 * pose.y_jitter) - y0 * scale
    canvas = np.zeros((h, w), np.uint8)
    scene.draw(canvas, scale, ox, oy)
    labels = canvas >> 4
    material = canvas & 15

    # Colour lookup of material | (texture bit << 4): entries 16..31 hold the garments'
    # second texture colour (elsewhere the same colour), so one cv2.LUT pass paints all.
    lut = np.zeros((256, 3), np.float32)
    for m, c in (
        (_SKIN, ident.skin), (_HAIR, ident.hair_colour), (_UP, ident.upper_colours[0]),
        (_LO, ident.lower_colours[0]), (_SHOE, ident.shoe_colour), (_FEATURE, (25, 20, 20)),
    ):  # fmt: skip
        lut[m] = c
    lut[16:32] = lut[0:16]
    lut[16 + _UP], lut[16 + _LO] = ident.upper_colours[1], ident.lower_colours[1]
    for m, base in ((_SKIN_SH, _SKIN), (_UP_SH, _UP), (_LO_SH, _LO), (_SHOE_SH, _SHOE)):
        lut[m], lut[16 + m] = lut[base] * _SHADE, lut[16 + base] * _SHADE
    lut = np.clip(lut * pose.light + 0.5, 0, 255).astype(np.uint8)
    index = material
    if ident.upper_texture != "solid" or ident.lower_texture != "solid":
        # Textures are attached to the body: each garment pixel takes its pattern in the
        # frame of the shape it belongs to (a sleeve or trouser leg: along its bone from the
        # proximal joint; the torso and the lower garment's body: along the neck to mid-hip
        # axis from the neck), so a part's affine motion moves its pattern with it.
        garment = (material >= _UP) & (material <= _LO_SH)
        ys, xs = np.nonzero(garment)
        if len(ys):
            if len(scene.items) > 254:
                raise AssertionError(f"{len(scene.items)} shapes: the texture index map holds 254")
            # Only the garment shapes need drawing: where a later non-garment shape covers
            # one, the pixel is not a garment pixel and its owner is never read.
            owner = np.zeros((h, w), np.uint8)
            values = [n + 1 if _UP <= (v & 15) <= _LO_SH else 0 for n, (_, _, v) in enumerate(scene.items)]
            scene.draw(owner, scale, ox, oy, values=values)
            f = scene.frame_array(scale, ox, oy)[owner[ys, xs]]  # [N, 5]
            ry, rx = ys.astype(np.float32) - f[:, 1], xs.astype(np.float32) - f[:, 0]
            along = rx * f[:, 2] + ry * f[:, 3]
            across = (rx * f[:, 3] - ry * f[:, 2]) / f[:, 4]
            period = max(ident.texture_period * scale, 2.0)
            upper = material[ys, xs] < _LO
            second = np.zeros(len(ys), bool)
            for kind, where in ((ident.upper_texture, upper), (ident.lower_texture, ~upper)):
                second[where] = _texture(kind, along[where], across[where], period, ident.texture_angle)
            index = material.copy()
            index[ys, xs] |= second.view(np.uint8) << 4
    # cv2.LUT per channel: several times faster than numpy fancy indexing here.
    image = cv2.merge([cv2.LUT(index, np.ascontiguousarray(lut[:, c])) for c in range(3)])
    image = cv2.copyTo(background, (material == _BG).view(np.uint8), image)

    out = np.full((18, 2), -1.0, np.float32)
    for i, p in enumerate(kp):
        if p is not None:
            out[i, 0] = min(max(round(p[1] * scale + oy), 0), h - 1)
            out[i, 1] = min(max(round(p[0] * scale + ox), 0), w - 1)
    return image, labels, out


def _image_rng(seed: int, identity: int, pose: int) -> np.random.Generator:
    return np.random.default_rng([seed, identity, pose])


@functools.lru_cache(maxsize=64)
def identity_of(seed: int, identity: int) -> Identity:
    """The body and clothes of identity number ``identity`` (cached: its images share it)."""
    return sample_identity(np.random.default_rng([seed, identity, 1 << 30]))


def render_keypoints(ident: Identity, pose: KeypointPose, background: np.ndarray):
    """Renders one person in a pose given by 2-D keypoints; returns as :func:`render`.

    Keypoints missing in ``pose.keypoints`` are ``-1`` in the returned ones too.
    """
    return _render_scene(ident, pose, background, *_build_from_keypoints(ident, pose))


def render_example(
    seed: int, identity: int, pose_index: int, height: int, width: int, poses: pose_bank.PoseBank | None = None
):
    """Everything of one image: (identity, pose, background, image, labels, keypoints).

    With ``poses``, the pose is the bank's row ``poses.row(seed, identity, pose_index)``
    (a :class:`KeypointPose`); the framing, brightness and background are drawn as for
    the built-in poses.
    """
    ident = identity_of(seed, identity)
    rng = _image_rng(seed, identity, pose_index)
    if poses is not None:
        r = poses.row(seed, identity, pose_index)
        framing = sample_pose(rng)  # only its framing and brightness are used
        pose = KeypointPose(
            view=poses.views[r], yaw=poses.yaws[r], keypoints=poses.keypoints[r],
            source=poses.names[r], height_frac=framing.height_frac,
            x_jitter=framing.x_jitter, y_jitter=framing.y_jitter, light=framing.light,
        )  # fmt: skip
        built = _build_from_keypoints(ident, pose)
    else:
        for _ in range(30):  # redraw poses too wide for the frame (deterministic: same rng)
            pose = sample_pose(rng)
            built = _build(ident, pose)
            x0, y0, x1, y1 = built[0].bbox()
            # Fills most of the height: wide poses in a narrow frame would shrink the person.
            if 0.97 * (width - 1) / (x1 - x0) >= 0.9 * pose.height_frac * (height - 1) / (y1 - y0):
                break
    avoid = (ident.skin, *ident.upper_colours, *ident.lower_colours, ident.hair_colour)
    background = sample_background(rng, height, width, avoid)
    image, labels, kp = _render_scene(ident, pose, background, *built)
    for n in ("Rsho", "Lsho", "Rhip", "Lhip"):
        if (kp[KP[n]] < 0).any():  # by construction; a failure here is a bug
            raise AssertionError(f"keypoint {n} of identity {identity} pose {pose_index} missing")
    return ident, pose, background, image, labels, kp


# ---------------------------------------------------------------------------- dataset


def image_name(identity: int, pose: int, poses_per_identity: int) -> str:
    """``id00012_p03.png``: the identity is the prefix before ``_``."""
    digits = max(2, len(str(poses_per_identity - 1)))
    return f"id{identity:05d}_p{pose:0{digits}d}.png"


def _work(args):
    """Renders and writes all images of a chunk of identities (one worker task)."""
    out_dir, seed, ids, k, h, w, test_ids, poses = args
    results = []
    for i in ids:
        split = "test" if i in test_ids else "train"
        for p in range(k):
            ident, pose, _, image, labels, kp = render_example(seed, i, p, h, w, poses)
            name = image_name(i, p, k)
            formats.write_image(os.path.join(out_dir, split, name), image)
            formats.write_parsing(os.path.join(out_dir, "parsing", name), labels)
            results.append((name, f"id{i:05d}", split, ident, pose, kp))
    return results


def _test_identities(identities: int, test_fraction: float, seed: int) -> set[int]:
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n_test = int(round(identities * test_fraction))
    if test_fraction > 0 and identities >= 2:
        n_test = min(max(n_test, 1), identities - 1)
    order = np.random.default_rng([seed, 1 << 31]).permutation(identities)
    return {int(i) for i in order[:n_test]}


def generate(
    out_dir: str,
    identities: int,
    poses_per_identity: int,
    height: int,
    width: int,
    seed: int,
    test_fraction: float = 0.2,
    workers: int = 1,
    poses_from: str | None = None,
    poses_min_limb_joints: int = pose_bank.MIN_LIMB_JOINTS,
) -> dict:
    """Writes a synthetic dataset (layout in the module docstring and ``docs/data.md``).

    Args:
      out_dir: output folder (created; existing files of the same names are replaced).
      identities: number of people; train and test identities are disjoint.
      poses_per_identity: images per person (>= 2, so that pairs exist).
      height, width: image size in pixels.
      seed: the same seed gives byte-identical files, whatever ``workers``.
      test_fraction: fraction of identities in the test split.
      workers: processes rendering in parallel.
      poses_from: an annotation CSV (``spt_tf.data.formats``) whose eligible rows
        (:mod:`spt_tf.data.pose_bank`) give the poses instead of the joint-angle sampler;
        ``identities.csv`` then has a ``pose_row`` column (the row's name).
      poses_min_limb_joints: the eligibility rule's limb joints threshold (0..8).

    Returns:
      Summary dict: counts of images / identities / pairs per split, the paths,
      ``seconds`` and ``images_per_second``; with ``poses_from`` also ``poses_from``,
      ``pose_rows`` (rows in the file) and ``pose_rows_eligible``.
    """
    if identities < 1 or poses_per_identity < 2:
        raise ValueError("need identities >= 1 and poses_per_identity >= 2")
    if height < 16 or width < 8:
        raise ValueError(f"image size {height}x{width} is too small to draw a person")
    start = time.perf_counter()
    poses = pose_bank.load(poses_from, poses_min_limb_joints) if poses_from else None
    test_ids = _test_identities(identities, test_fraction, seed)
    for sub in ("train", "test", "parsing"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    n_chunks = max(1, min(identities, 4 * workers))
    chunks = [list(range(identities))[c::n_chunks] for c in range(n_chunks)]
    tasks = [(out_dir, seed, ids, poses_per_identity, height, width, test_ids, poses)
             for ids in chunks]  # fmt: skip
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_work, tasks)
    else:
        parts = [_work(t) for t in tasks]
    results = sorted((r for part in parts for r in part), key=lambda r: r[0])

    annotations = {"train": {}, "test": {}}
    by_identity: dict[tuple[str, str], list[str]] = {}
    rows = []
    for name, ident_name, split, ident, pose, kp in results:
        annotations[split][name] = kp
        by_identity.setdefault((split, ident_name), []).append(name)
        rows.append([
            name, ident_name, split, ident.upper, ident.lower, pose.view,
            ident.upper_texture, ident.lower_texture, ident.hair_style,
        ] + ([pose.source] if poses is not None else []))  # fmt: skip
    paths = {}
    for split in ("train", "test"):
        paths[f"annotations_{split}"] = os.path.join(out_dir, f"annotation-{split}.csv")
        formats.write_annotations(paths[f"annotations_{split}"], annotations[split])
        pairs = [
            (a, b)
            for (s, _), names in sorted(by_identity.items())
            if s == split
            for a in names
            for b in names
            if a != b
        ]
        paths[f"pairs_{split}"] = os.path.join(out_dir, f"pairs-{split}.csv")
        formats.write_pairs(paths[f"pairs_{split}"], pairs)
    paths["identities"] = os.path.join(out_dir, "identities.csv")
    with open(paths["identities"], "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(
            ["name", "identity", "split", "upper", "lower", "view", "upper_texture",
             "lower_texture", "hair"] + (["pose_row"] if poses is not None else [])
        )  # fmt: skip
        writer.writerows(rows)
    seconds = time.perf_counter() - start
    k = poses_per_identity
    extra = {} if poses is None else {
        "poses_from": os.fspath(poses_from), "pose_rows": poses.total_rows,
        "pose_rows_eligible": len(poses),
    }  # fmt: skip
    return {
        "out_dir": out_dir,
        "train_images": len(annotations["train"]),
        "test_images": len(annotations["test"]),
        "train_identities": identities - len(test_ids),
        "test_identities": len(test_ids),
        "train_pairs": (identities - len(test_ids)) * k * (k - 1),
        "test_pairs": len(test_ids) * k * (k - 1),
        "paths": paths,
        "seconds": seconds,
        "images_per_second": len(results) / seconds,
        **extra,
    }


# ---------------------------------------------------------------------------- figure


def _read_identities(path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sample_figure(data_dir: str, out_png: str, n: int = 8) -> str:
    """A grid of ``n`` images (rows: image, parsing, skeleton overlay) from a dataset folder.

    Samples are spread over identities, splits and views, deterministically.
    Small images are enlarged (nearest neighbour) so the figure is readable.

    Returns:
      ``out_png``.
    """
    rows = _read_identities(os.path.join(data_dir, "identities.csv"))
    seen, picked = set(), []
    for row in rows:  # one image per identity first, then fill up
        if row["identity"] not in seen:
            seen.add(row["identity"])
            picked.append(row)
    picked = (picked + [r for r in rows if r not in picked])[:n]
    ann = {}
    for split in ("train", "test"):
        ann.update(formats.read_annotations(os.path.join(data_dir, f"annotation-{split}.csv")))
    tiles = []
    colours = [tuple(int(c) for c in L.PALETTE[1 + i % 9]) for i in range(len(SKELETON))]
    for row in picked:
        name = row["name"]
        img = formats.read_image(os.path.join(data_dir, row["split"], name))
        lab = formats.read_parsing(formats.find_parsing(os.path.join(data_dir, "parsing"), name), shape=img.shape[:2])
        zoom = max(1, int(math.ceil(192 / img.shape[0])))
        big = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        par = cv2.resize(L.colorize(lab), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        ske = (big * 0.5).astype(np.uint8)
        kp = ann[name] * zoom + (zoom - 1) / 2
        for (a, b), c in zip(SKELETON, colours):
            if (ann[name][[a, b]] >= 0).all():
                pa = (int(kp[a, 1]), int(kp[a, 0]))
                pb = (int(kp[b, 1]), int(kp[b, 0]))
                cv2.line(ske, pa, pb, c, max(1, zoom // 2), cv2.LINE_AA)
        for j in range(len(kp)):
            if (ann[name][j] >= 0).all():
                cv2.circle(ske, (int(kp[j, 1]), int(kp[j, 0])), max(2, zoom), (255, 255, 255), -1,
                           cv2.LINE_AA)  # fmt: skip
        col = np.concatenate([big, par, ske], axis=0)
        tiles.append(np.concatenate([col, np.full((col.shape[0], 4, 3), 255, np.uint8)], axis=1))
    grid = np.concatenate(tiles, axis=1)
    formats.write_image(out_png, grid)
    return out_png


# ---------------------------------------------------------------------------- CLI


def build_parser(parser_class=argparse_flags.ArgumentParser, **kwargs) -> argparse.ArgumentParser:
    """The CLI parser (``parser_class=argparse.ArgumentParser``: without absl's own flags)."""
    p = parser_class(prog="python -m spt_tf.data.synthetic", description=__doc__.split("\n")[0], **kwargs)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--identities", type=int, required=True)
    p.add_argument("--poses_per_identity", type=int, required=True)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test_fraction", type=float, default=0.2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--figure", default="", help="also write a sample figure to this .png")
    p.add_argument(
        "--poses_from",
        default="",
        help="annotation CSV whose eligible rows give the poses (read at run time; "
        "docs/data.md: the rule, framing, missing joints, views)",
    )
    p.add_argument(
        "--poses_min_limb_joints",
        type=int,
        default=pose_bank.MIN_LIMB_JOINTS,
        help="eligible rows have at least this many of the 8 elbows, wrists, knees and ankles",
    )
    return p


def run(a: argparse.Namespace) -> dict:
    """Generates the dataset the parsed flags describe; prints and returns the summary."""
    summary = generate(
        a.out, a.identities, a.poses_per_identity, a.height, a.width, a.seed,
        test_fraction=a.test_fraction, workers=a.workers, poses_from=a.poses_from or None,
        poses_min_limb_joints=a.poses_min_limb_joints,
    )  # fmt: skip
    if a.poses_from:
        print(f"poses from {a.poses_from}: {summary['pose_rows_eligible']} of {summary['pose_rows']} rows eligible")
    print(
        f"wrote {summary['train_images']} train / {summary['test_images']} test images "
        f"({summary['train_identities']} / {summary['test_identities']} identities) to {a.out} "
        f"in {summary['seconds']:.1f} s ({summary['images_per_second']:.0f} images/s)"
    )
    if a.figure:
        print(f"sample figure: {sample_figure(a.out, a.figure)}")
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    """The command line from code: ``argv`` without the program name (None: ``sys.argv[1:]``).

    Prints and returns the summary of :func:`generate`.
    """
    return run(build_parser(argparse.ArgumentParser).parse_args(argv))


def parse_flags(argv: list[str]) -> argparse.Namespace:
    """``flags_parser`` of ``absl.app.run``: ``argv[0]`` is the program; absl's flags too."""
    return build_parser().parse_args(argv[1:])


def app_main(args: argparse.Namespace) -> None:
    """``main`` of ``absl.app.run`` (which exits with the returned value: None here)."""
    run(args)


if __name__ == "__main__":
    from absl import app

    app.run(app_main, flags_parser=parse_flags)
