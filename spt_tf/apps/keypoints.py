"""Keypoints of custom images: OpenPose JSON, the pose detector P, annotation CSVs.

Everything returns float32 ``[18, 2]`` ``(y, x)`` image pixels in COCO-18
order (``spt_tf.skeleton.KEYPOINT_NAMES``) with ``-1`` for a missing joint, the
convention of the whole project.

OpenPose JSON: ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...]}]}``
(``pose_keypoints`` in OpenPose < 1.2). 18 triplets are the COCO model, 25 the
BODY_25 model. A joint with confidence ``c <= threshold`` (OpenPose writes
``0, 0, 0`` for an undetected joint) becomes ``-1``.

Index convention of the eyes and ears: OpenPose's COCO model writes
``14 REye, 15 LEye, 16 REar, 17 LEar``; the field's annotation CSVs
(DeepFashion, Market-1501) were made by such a detector and keep that index
layout, although pose-gan (and ``skeleton.KEYPOINT_NAMES``) label 14..17
``Leye, Reye, Lear, Rear``. BODY_25 is converted to the OpenPose COCO index
layout (``REye -> 14``, ...), so a BODY_25 file and a COCO file of the same
photo give the same array. Every geometry op treats the two eyes (and ears)
symmetrically; only the heatmap channel order depends on it.
"""

from __future__ import annotations

import json
import os

import numpy as np

from spt_tf.data import formats

# The COCO-18 layout from the TF-free spt_tf.skeleton (spt_tf.geometry would load TensorFlow);
# other app modules use these names through this module.
from spt_tf.skeleton import KEYPOINT_NAMES, KP, MISSING, NUM_KEYPOINTS

# SPT needs the torso: body scale, the torso part transform and the pairs rule
# of the field (images lacking both shoulders or both hips are dropped).
REQUIRED = ("Rsho", "Lsho", "Rhip", "Lhip")

# OpenPose BODY_25 index -> COCO-18 index (OpenPose's own COCO layout). BODY_25's
# 8 MidHip and 19..24 (toes, heels) have no COCO-18 counterpart.
BODY25_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)  # fmt: skip
BODY25_TO_COCO18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)


class KeypointError(ValueError):
    """Unusable keypoints: no person, too few joints, a bad keypoint file."""


def missing_names(keypoints: np.ndarray, names=KEYPOINT_NAMES) -> list[str]:
    """Names of the joints of ``names`` that are missing (any coordinate ``-1``) in ``[18, 2]``."""
    kp = np.asarray(keypoints)
    return [n for n in names if np.any(kp[KP[n]] == MISSING)]


def check_keypoints(keypoints: np.ndarray, what: str) -> np.ndarray:
    """Validates one pose for SPT; returns it as float32 ``[18, 2]``.

    Args:
      keypoints: ``[18, 2]`` ``(y, x)``, ``-1`` missing.
      what: names the pose in the error (e.g. ``"target pose (b.json)"``).

    Raises:
      KeypointError: wrong shape, non-finite values, no joint at all (no
        person), or a torso joint missing: the message lists the missing
        joints and what SPT needs.
    """
    kp = np.asarray(keypoints, np.float32)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise KeypointError(f"{what}: keypoints must be [18, 2] (y, x), got shape {kp.shape}")
    if not np.isfinite(kp).all():
        raise KeypointError(f"{what}: keypoints hold non-finite values")
    missing = missing_names(kp)
    if len(missing) == NUM_KEYPOINTS:
        raise KeypointError(f"{what}: no person found (all 18 keypoints are missing)")
    torso = missing_names(kp, REQUIRED)
    if torso:
        raise KeypointError(
            f"{what}: too few keypoints: missing {', '.join(torso)}; SPT needs the torso: both "
            f"shoulders (Rsho, Lsho) and both hips (Rhip, Lhip). All missing joints: {', '.join(missing)}"
        )
    return kp


# ---------------------------------------------------------------- OpenPose


def from_openpose_array(values, threshold: float = 0.0, where: str = "pose_keypoints_2d") -> np.ndarray:
    """A flat OpenPose ``[x0, y0, c0, ...]`` list (COCO-18 or BODY_25) -> ``[18, 2]`` ``(y, x)``.

    Args:
      values: 54 (COCO-18) or 75 (BODY_25) numbers.
      threshold: joints with confidence ``<= threshold`` become ``-1``.
      where: names the source in errors.
    """
    arr = np.asarray(values, np.float64).reshape(-1)
    if arr.size % 3 or arr.size // 3 not in (18, 25):
        raise KeypointError(
            f"{where}: expected 18 (COCO) or 25 (BODY_25) x, y, confidence triplets, got {arr.size} numbers"
        )
    if not np.isfinite(arr).all():
        raise KeypointError(f"{where}: non-finite values")
    tri = arr.reshape(-1, 3)
    if tri.shape[0] == 25:
        tri = tri[list(BODY25_TO_COCO18)]
    out = np.stack([tri[:, 1], tri[:, 0]], axis=1)
    out[tri[:, 2] <= threshold] = MISSING
    return out.astype(np.float32)


def read_openpose_json(path, person: int | None = None, threshold: float = 0.0) -> np.ndarray:
    """Reads one person's keypoints from an OpenPose ``--write_json`` file.

    Args:
      path: the JSON file.
      person: index into ``people``; required when the file holds several.
      threshold: joints with confidence ``<= threshold`` become ``-1``.

    Returns:
      float32 ``[18, 2]`` ``(y, x)``, ``-1`` missing.

    Raises:
      FormatError: missing / unreadable file, not OpenPose JSON.
      KeypointError: no person in the file, several and no ``person`` chosen.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise formats.FormatError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise formats.FormatError(path, f"cannot read JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("people"), list):
        raise formats.FormatError(path, "not OpenPose JSON: no 'people' list", field="people")
    people = data["people"]
    if not people:
        raise KeypointError(f"{path}: no person found (OpenPose detected nobody: 'people' is empty)")
    if person is None:
        if len(people) > 1:
            raise KeypointError(f"{path}: {len(people)} people detected; choose one with --person 0..{len(people) - 1}")
        person = 0
    if not 0 <= person < len(people):
        raise KeypointError(f"{path}: --person {person} out of range, the file holds {len(people)} people")
    entry = people[person]
    key = "pose_keypoints_2d" if "pose_keypoints_2d" in entry else "pose_keypoints"
    if key not in entry:
        raise formats.FormatError(path, f"person {person} has no 'pose_keypoints_2d'", field="pose_keypoints_2d")
    try:
        return from_openpose_array(entry[key], threshold, where=f"{path}, person {person}, field {key!r}")
    except (TypeError, ValueError) as e:
        if isinstance(e, KeypointError):
            raise
        raise formats.FormatError(path, f"person {person}: non-numeric keypoints ({e})", field=key) from None


def to_openpose_array(keypoints: np.ndarray) -> list[float]:
    """``[18, 2]`` ``(y, x)`` -> OpenPose's flat COCO-18 ``[x0, y0, c0, ...]``: ``c = 1`` for a
    present joint, ``0, 0, 0`` for a missing one (as OpenPose writes an undetected joint).

    :func:`from_openpose_array` with any threshold in ``[0, 1)`` gives ``keypoints`` back exactly.
    """
    kp = np.asarray(keypoints, np.float32)
    if kp.shape != (NUM_KEYPOINTS, 2):
        raise KeypointError(f"keypoints must be [18, 2] (y, x), got shape {kp.shape}")
    out = []
    for y, x in kp.tolist():  # float32 -> float is exact, and so is JSON's repr of it
        out += [0.0, 0.0, 0.0] if MISSING in (y, x) else [x, y, 1.0]
    return out


def write_openpose_json(path, keypoints: np.ndarray, **extra) -> None:
    """Writes one person as an OpenPose ``--write_json`` file (COCO-18 layout, read back by
    :func:`read_openpose_json` / ``--openpose_json``); ``extra`` adds top-level fields."""
    data = {"version": 1.3, "people": [{"pose_keypoints_2d": to_openpose_array(keypoints)}], **extra}
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------- pose detector


def from_heatmaps(heatmaps: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Keypoints from P's heatmaps: the peak of each channel, ``-1`` where it is weak.

    The peak is the arg-max pixel refined by the heatmap-weighted centroid of
    its 3x3 neighbourhood (sub-pixel; a symmetric peak stays where it is).

    Args:
      heatmaps: float ``[H, W, 18]`` in [0, 1] (P's output for one image).
      threshold: a channel whose maximum is ``< threshold`` gives a missing joint.

    Returns:
      float32 ``[18, 2]`` ``(y, x)`` in heatmap pixels, ``-1`` missing.
    """
    hm = np.asarray(heatmaps, np.float64)
    if hm.ndim != 3 or hm.shape[-1] != NUM_KEYPOINTS:
        raise ValueError(f"heatmaps must be [H, W, 18], got shape {hm.shape}")
    h, w, _ = hm.shape
    out = np.full((NUM_KEYPOINTS, 2), MISSING, np.float32)
    for k in range(NUM_KEYPOINTS):
        ch = hm[:, :, k]
        i, j = np.unravel_index(int(np.argmax(ch)), ch.shape)
        if not ch[i, j] >= threshold:  # also rejects NaN
            continue
        y0, y1, x0, x1 = max(i - 1, 0), min(i + 2, h), max(j - 1, 0), min(j + 2, w)
        patch = np.maximum(ch[y0:y1, x0:x1], 0.0)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        total = patch.sum()
        out[k] = (yy * patch).sum() / total, (xx * patch).sum() / total
    return out


# ---------------------------------------------------------------- annotation CSV


def from_annotations(path, name: str, tolerance: float = 2.0) -> np.ndarray:
    """The keypoints of image ``name`` in an annotation CSV (``name:keypoints_y:keypoints_x``).

    Args:
      path: the CSV.
      name: the image's row name.
      tolerance: pixels a keypoint may lie outside the image
        (``formats.read_annotations``; the file holds no image size, so only the
        lower bound ``-tolerance`` is checked here). The field's 256x176
        DeepFashion files need ``formats.DEEPFASHION_176_TOLERANCE``.

    Raises:
      FormatError: unreadable CSV, a row with a point beyond the tolerance
        (naming the row and field), or ``name`` not in it (the message shows
        some names it holds).
    """
    table = formats.read_annotations(path, tolerance=tolerance)
    if name not in table:
        known = list(table)
        base = os.path.basename(name)
        hint = f"; did you mean {base!r}?" if base in table else ""
        raise formats.FormatError(
            path, f"no row for image {name!r}{hint} ({len(known)} rows, e.g. {', '.join(known[:3])})", field="name"
        )
    return table[name].astype(np.float32)
