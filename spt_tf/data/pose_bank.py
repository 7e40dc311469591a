"""Poses from a real annotation file, for the synthetic people generator.

``spt_tf.data.synthetic`` draws a new pose from joint angles for every image; with
``poses_from`` it takes the 2-D keypoints of rows of an annotation CSV instead (the
``name: [18 y]: [18 x]`` format of :mod:`spt_tf.data.formats`, COCO-18, ``-1`` missing).
This module reads such a file, keeps the rows a figure can be drawn from, says from which
side each row sees the person, and picks rows deterministically for each image.

The file is read at run time; nothing of it is stored in the project.

Eligible rows (:func:`eligible`):
  * neck, both shoulders and both hips present (the torso is drawn from them, and the
    shoulders and hips are the field's pair rule);
  * at least ``min_limb_joints`` (default :data:`MIN_LIMB_JOINTS`) of the 8 limb joints
    (elbows, wrists, knees, ankles) present; with the default 6 of 8, at least two leg
    joints are there, so no figure ends at the hips;
  * an upright torso: the mid-hip point lies below the neck, within
    :data:`MAX_TORSO_TILT_DEG` of the vertical.

Views (:func:`classify_view`), from the torso's own axes (``lateral`` points to the image
right of a torso standing upright):
  * ``side`` when the shoulders are closer than :data:`SIDE_SHOULDER_RATIO` torso lengths
    along the lateral axis; facing the image left or right by where the nose (or an eye)
    lies relative to the ears (or the neck);
  * ``back`` when the person's right shoulder is on the image right (the shoulders are
    swapped relative to a front view), or when nose and eyes are missing but an ear is
    present;
  * ``front`` otherwise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from spt_tf.data import formats
from spt_tf.skeleton import KP

REQUIRED = ("neck", "Rsho", "Lsho", "Rhip", "Lhip")
LIMB_JOINTS = ("Relb", "Rwri", "Lelb", "Lwri", "Rkne", "Rank", "Lkne", "Lank")
MIN_LIMB_JOINTS = 6
MAX_TORSO_TILT_DEG = 45.0
# Shoulder separation along the torso's lateral axis below which a row is a side view, in
# torso lengths (neck to mid-hip); a frontal person's are more than half a torso length apart.
SIDE_SHOULDER_RATIO = 0.3

# Yaw angles (degrees) the renderer gets for each view; a side view faces the image left
# (-90) or right (+90), as ``spt_tf.data.synthetic.Pose.yaw``.
VIEW_YAW = {"front": 0.0, "back": 180.0}

# Random stream of the row choice: apart from the identity ([seed, i, 1 << 30]) and image
# ([seed, i, pose]) streams of the generator.
_ROW_STREAM = 1 << 29


def present(keypoints: np.ndarray) -> np.ndarray:
    """[..., 18, 2] -> [..., 18] bool: the joint has no ``-1`` coordinate."""
    return np.all(np.asarray(keypoints) != formats.MISSING, axis=-1)


def _torso_axes(kp: np.ndarray):
    """(neck (y, x), down unit (y, x), lateral unit (y, x), torso length) of [..., 18, 2]."""
    neck = kp[..., KP["neck"], :]
    mid_hip = 0.5 * (kp[..., KP["Rhip"], :] + kp[..., KP["Lhip"], :])
    d = mid_hip - neck
    length = np.hypot(d[..., 0], d[..., 1])
    down = d / np.maximum(length, 1e-9)[..., None]
    # (y, x) = (-down_x, down_y): for a torso pointing straight down, (0, 1), the image right.
    lateral = np.stack([-down[..., 1], down[..., 0]], -1)
    return neck, down, lateral, length


def eligible(keypoints: np.ndarray, min_limb_joints: int = MIN_LIMB_JOINTS) -> np.ndarray:
    """[N, 18, 2] (y, x) -> [N] bool: the rows the generator may draw (module docstring)."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 18, 2)
    vis = present(kp)
    ok = vis[:, [KP[n] for n in REQUIRED]].all(1)
    ok &= vis[:, [KP[n] for n in LIMB_JOINTS]].sum(1) >= min_limb_joints
    _, down, _, length = _torso_axes(kp)
    ok &= length > 0
    # Angle between the neck -> mid-hip direction and the image's downward vertical.
    ok &= down[:, 0] > math.cos(math.radians(MAX_TORSO_TILT_DEG))
    return ok


def classify_view(kp: np.ndarray) -> tuple[str, float]:
    """``(view, yaw)`` of one eligible row [18, 2] (y, x) (rules in the module docstring)."""
    kp = np.asarray(kp, np.float64)
    vis = present(kp)
    neck, _, lateral, length = _torso_axes(kp)

    def u(name):  # position along the torso's lateral axis, relative to the neck
        return float((kp[KP[name]] - neck) @ lateral)

    sep = (u("Lsho") - u("Rsho")) / length  # > 0: person's left on the image right (front)
    face = [n for n in ("nose", "Leye", "Reye") if vis[KP[n]]]
    ears = [n for n in ("Lear", "Rear") if vis[KP[n]]]
    if abs(sep) < SIDE_SHOULDER_RATIO:
        front_pt = u(face[0]) if face else None  # the nose first, else an eye
        back_pt = float(np.mean([u(n) for n in ears])) if ears else 0.0  # else the neck
        if front_pt is not None and front_pt != back_pt:
            facing = -1.0 if front_pt < back_pt else 1.0
        elif len(ears) == 1:  # one ear: the near side; the person's left near faces left
            facing = -1.0 if ears[0] == "Lear" else 1.0
        else:
            facing = -1.0
        return "side", 90.0 * facing
    if sep < 0 or (not face and ears):
        return "back", VIEW_YAW["back"]
    return "front", VIEW_YAW["front"]


@dataclasses.dataclass(frozen=True, eq=False)
class PoseBank:
    """The eligible rows of an annotation file.

    Attributes:
      path: the file.
      names: [N] names of the eligible rows, in file order.
      keypoints: [N, 18, 2] float32 (y, x) in the file's pixels, ``-1`` missing.
      views: [N] ``front`` / ``back`` / ``side``.
      yaws: [N] degrees for the renderer.
      total_rows: rows in the file.
      min_limb_joints: the rule's threshold.
    """

    path: str
    names: tuple
    keypoints: np.ndarray
    views: tuple
    yaws: tuple
    total_rows: int
    min_limb_joints: int

    def __len__(self) -> int:
        return len(self.names)

    def row(self, seed: int, identity: int, pose_index: int) -> int:
        """The row image ``pose_index`` of identity ``identity`` is drawn from.

        Each identity walks its own permutation of the rows (from ``(seed, identity)``
        alone), so its images have distinct rows while there are enough, and the choice
        does not depend on the number of identities, poses or worker processes.
        """
        order = np.random.default_rng([seed, identity, _ROW_STREAM]).permutation(len(self))
        return int(order[pose_index % len(self)])


def load(path, min_limb_joints: int = MIN_LIMB_JOINTS) -> PoseBank:
    """Reads an annotation CSV and keeps its eligible rows.

    Coordinates are taken as they are, whatever the file's frame (the generator frames
    each figure itself), so points outside the file's frame are accepted.

    Raises:
      formats.FormatError: the file cannot be read as an annotation CSV.
      ValueError: ``min_limb_joints`` outside 0..8, or no eligible row.
    """
    if not 0 <= min_limb_joints <= len(LIMB_JOINTS):
        raise ValueError(f"min_limb_joints must be in 0..{len(LIMB_JOINTS)}, got {min_limb_joints}")
    ann = formats.read_annotations(path, tolerance=math.inf)
    names = list(ann)
    kp = np.stack([ann[n] for n in names]) if names else np.zeros((0, 18, 2), np.float32)
    ok = eligible(kp, min_limb_joints)
    if not ok.any():
        raise ValueError(
            f"{path}: none of its {len(names)} rows has neck, both shoulders and both hips, "
            f">= {min_limb_joints} of the 8 limb joints and an upright torso"
        )
    keep = np.nonzero(ok)[0]
    kp = np.ascontiguousarray(kp[keep])
    views = [classify_view(k) for k in kp]
    return PoseBank(
        path=str(path),
        names=tuple(names[i] for i in keep),
        keypoints=kp,
        views=tuple(v for v, _ in views),
        yaws=tuple(y for _, y in views),
        total_rows=len(names),
        min_limb_joints=min_limb_joints,
    )
