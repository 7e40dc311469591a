"""The client CLI's files: keypoints from JSON or an annotation CSV, inputs fitted to the
model's size, PNG bytes for the encoded-image signatures, and the result figure.

No TensorFlow: skeleton constants come from :mod:`spt_tf.skeleton`, the pose
drawing from :mod:`spt_tf.apps.figures`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import cv2
import numpy as np

from spt_tf import skeleton
from spt_tf.apps import figures
from spt_tf.data import formats


def read_keypoints_json(path) -> np.ndarray:
    """``{"keypoints": [[y, x], ...]}`` (18 pairs, -1 missing) -> float32 ``[18, 2]``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(data, dict) or "keypoints" not in data:
        raise ValueError(f"{path}: expected an object with a 'keypoints' field")
    try:
        kp = np.asarray(data["keypoints"], dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: field 'keypoints' must be a list of [y, x] numbers") from None
    if kp.shape != (skeleton.NUM_KEYPOINTS, 2):
        raise ValueError(
            f"{path}: field 'keypoints' must be {skeleton.NUM_KEYPOINTS} [y, x] pairs, got shape {kp.shape}"
        )
    if not np.isfinite(kp).all():
        raise ValueError(f"{path}: field 'keypoints' holds a non-finite value")
    return kp


def load_keypoints(json_path=None, annotations=None, name=None, what="keypoints") -> np.ndarray:
    """Keypoints from a JSON file, or by image name from an annotation CSV."""
    if json_path and name:
        raise ValueError(f"{what}: give a JSON file or a name in --annotations, not both")
    if json_path:
        return read_keypoints_json(json_path)
    if not (annotations and name):
        raise ValueError(f"{what}: give a JSON file, or --annotations with an image name")
    table = formats.read_annotations(annotations)
    if name not in table:
        raise ValueError(f"{annotations}: no row named {name!r} (for the {what})")
    return table[name]


def fit_to_model(image, parsing, keypoints_list, size, resize: bool, what: str):
    """Resizes image/parsing/keypoints to the model size when asked; else insists they match."""
    h, w = (image if image is not None else parsing).shape[:2]
    if (h, w) == tuple(size):
        return image, parsing, keypoints_list
    if not resize:
        raise ValueError(f"{what} is {h}x{w} (H x W) but the model takes {size[0]}x{size[1]}; pass --resize")
    sy, sx = size[0] / h, size[1] / w
    if image is not None:
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    if parsing is not None:
        parsing = cv2.resize(parsing, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    scaled = []
    for kp in keypoints_list:
        missing = np.all(kp == skeleton.MISSING, axis=-1, keepdims=True)
        scaled.append(np.where(missing, skeleton.MISSING, kp * np.array([sy, sx], np.float32)))
    return image, parsing, scaled


def encode_png(array: np.ndarray) -> bytes:
    """uint8 RGB ``[H, W, 3]`` or labels ``[H, W]`` -> PNG bytes."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("cannot encode PNG")
    return buf.tobytes()


def decode_png_rgb(data: bytes) -> np.ndarray:
    """Encoded colour image -> uint8 RGB ``[H, W, 3]``."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def decode_png_labels(data: bytes) -> np.ndarray:
    """8-bit single-channel label PNG -> uint8 ``[H, W]``."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def draw_pose(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A skeleton drawing uint8 ``[H, W, 3]`` of ``[18, 2]`` ``(y, x)`` keypoints on black."""
    return figures.draw_skeleton(keypoints, shape=size)


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str] = ()) -> np.ndarray:
    """Panels of one size side by side at their own size, with titles above when wide enough.

    Unlike :func:`spt_tf.apps.figures.side_by_side`, which scales every panel to
    one display height under a caption bar, this keeps the model's pixels: the
    figure of a model of size ``H x W`` is ``H x (panels * W)`` (plus a 16-pixel
    title row when ``W >= 64``).
    """
    h, w = panels[0].shape[:2]
    row = np.concatenate([np.asarray(p, np.uint8) for p in panels], axis=1)
    if not titles or w < 64:
        return row
    header = np.full((16, row.shape[1], 3), 255, np.uint8)
    for i, title in enumerate(titles):
        cv2.putText(header, title, (i * w + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, row], axis=0)
