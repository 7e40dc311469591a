"""Label sets: the 10 SPT labels, LIP-20, the LIP -> SPT table, and colours.

The LIP -> SPT mapping is kept as data (``LIP_TO_SPT``) so a config can
override it (``lip_table`` argument of :func:`lip_to_spt`). Side-less LIP labels
(glove, socks) take the side of the nearer wrist / ankle keypoint.
"""

from __future__ import annotations

import numpy as np

# The 10 labels of SPT (the paper, Sec. 4.1), in index order.
SPT_LABELS = (
    "background",
    "face",
    "hair",
    "upper_clothes",
    "pants",
    "skirt",
    "left_arm",
    "right_arm",
    "left_leg",
    "right_leg",
)
NUM_LABELS = len(SPT_LABELS)
BACKGROUND, FACE, HAIR, UPPER, PANTS, SKIRT, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG = range(10)
# Each label's label in the left-right mirrored image (the sides swap).
MIRROR_LABELS = (BACKGROUND, FACE, HAIR, UPPER, PANTS, SKIRT, RIGHT_ARM, LEFT_ARM, RIGHT_LEG, LEFT_LEG)

# LIP's 20 labels, in index order.
LIP_LABELS = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper_clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuits",
    "scarf",
    "skirt",
    "face",
    "left_arm",
    "right_arm",
    "left_leg",
    "right_leg",
    "left_shoe",
    "right_shoe",
)
NUM_LIP_LABELS = len(LIP_LABELS)

# Sentinels for side-less LIP labels: resolved per pixel by the nearer keypoint.
ARM_BY_NEARER_WRIST = -1
LEG_BY_NEARER_ANKLE = -2

# Decision (docs/data.md, LIP-format parsing): LIP name -> SPT name (or a side-less sentinel).
LIP_TO_SPT: dict[str, str | int] = {
    "background": "background",
    "hat": "hair",
    "hair": "hair",
    "glove": ARM_BY_NEARER_WRIST,
    "sunglasses": "face",
    "upper_clothes": "upper_clothes",
    "dress": "upper_clothes",
    "coat": "upper_clothes",
    "socks": LEG_BY_NEARER_ANKLE,
    "pants": "pants",
    "jumpsuits": "pants",
    "scarf": "upper_clothes",
    "skirt": "skirt",
    "face": "face",
    "left_arm": "left_arm",
    "right_arm": "right_arm",
    "left_leg": "left_leg",
    "right_leg": "right_leg",
    "left_shoe": "left_leg",
    "right_shoe": "right_leg",
}

# One RGB colour per SPT label, for figures.
PALETTE = np.array(
    [
        [0, 0, 0],  # background
        [255, 200, 150],  # face
        [120, 60, 20],  # hair
        [220, 40, 40],  # upper clothes
        [40, 60, 200],  # pants
        [200, 40, 200],  # skirt
        [40, 200, 40],  # left arm
        [160, 230, 60],  # right arm
        [40, 200, 200],  # left leg
        [60, 130, 230],  # right leg
    ],
    dtype=np.uint8,
)

# Keypoint indices used to resolve sides (COCO-18 order, see spt_tf.geometry).
_RWRI, _LWRI, _RANK, _LANK = 4, 7, 10, 13


def _table(lip_table: dict[str, str | int] | None) -> np.ndarray:
    table = dict(LIP_TO_SPT)
    if lip_table:
        unknown = set(lip_table) - set(LIP_LABELS)
        if unknown:
            raise ValueError(f"lip_table names unknown LIP labels: {sorted(unknown)}")
        table.update(lip_table)
    out = np.zeros(NUM_LIP_LABELS, dtype=np.int64)
    for i, name in enumerate(LIP_LABELS):
        target = table[name]
        if isinstance(target, str):
            if target not in SPT_LABELS:
                raise ValueError(f"lip_table maps {name!r} to unknown SPT label {target!r}")
            out[i] = SPT_LABELS.index(target)
        elif target in (ARM_BY_NEARER_WRIST, LEG_BY_NEARER_ANKLE):
            out[i] = target
        else:
            raise ValueError(f"lip_table entry for {name!r} must be an SPT label name, got {target!r}")
    return out


def _nearer_side(shape, keypoints, right_idx, left_idx, right_label, left_label):
    """Per-pixel label of the nearer of two keypoints (right if only it exists)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dists = []
    for idx in (right_idx, left_idx):
        if keypoints is None or np.any(keypoints[idx] == -1):
            dists.append(np.full((h, w), np.inf, np.float32))
        else:
            ky, kx = keypoints[idx]
            dists.append((yy - ky) ** 2 + (xx - kx) ** 2)
    if np.isinf(dists[0]).all() and np.isinf(dists[1]).all():
        raise ValueError(
            "a side-less LIP label (glove/socks) is present but neither "
            f"keypoint {right_idx} nor {left_idx} is visible to choose its side"
        )
    return np.where(dists[0] <= dists[1], right_label, left_label)


def lip_to_spt(
    lip: np.ndarray,
    keypoints: np.ndarray | None = None,
    lip_table: dict[str, str | int] | None = None,
) -> np.ndarray:
    """Converts a LIP-20 label map to the 10 SPT labels.

    Args:
      lip: [H, W] integer LIP labels in 0..19.
      keypoints: [18, 2] (y, x) keypoints, -1 missing; needed only when
        glove or socks pixels are present (their side is the nearer wrist/ankle).
      lip_table: optional overrides of ``LIP_TO_SPT`` (LIP name -> SPT name).

    Returns:
      [H, W] uint8 SPT labels in 0..9.

    Raises:
      ValueError: a map that is not [H, W], non-integral or out-of-range labels,
        a bad ``lip_table``, or glove/socks pixels without a wrist/ankle keypoint.
    """
    lip = np.asarray(lip)
    if lip.ndim != 2:
        raise ValueError(f"LIP map must be [H, W], got shape {lip.shape}")
    if lip.dtype.kind not in "iu" and not np.array_equal(lip, np.round(lip)):
        # A silent cast would truncate 1.5 to 1: a different label.
        raise ValueError(f"LIP labels must be integers, got non-integral {lip.dtype} values")
    if lip.size and (lip.min() < 0 or lip.max() >= NUM_LIP_LABELS):
        raise ValueError(f"LIP labels must be in 0..{NUM_LIP_LABELS - 1}, got {lip.min()}..{lip.max()}")
    table = _table(lip_table)
    out = table[lip.astype(np.int64)]
    kp = None if keypoints is None else np.asarray(keypoints, np.float32)
    for sentinel, (r_idx, l_idx, r_label, l_label) in (
        (ARM_BY_NEARER_WRIST, (_RWRI, _LWRI, RIGHT_ARM, LEFT_ARM)),
        (LEG_BY_NEARER_ANKLE, (_RANK, _LANK, RIGHT_LEG, LEFT_LEG)),
    ):
        sel = out == sentinel
        if sel.any():
            out[sel] = _nearer_side(lip.shape, kp, r_idx, l_idx, r_label, l_label)[sel]
    return out.astype(np.uint8)


def colorize(labels: np.ndarray) -> np.ndarray:
    """[..., H, W] labels (or [..., H, W, L] one-hot/probabilities) -> uint8 RGB.

    Raises:
      ValueError: labels outside 0..L-1.
    """
    labels = np.asarray(labels)
    if labels.ndim >= 3 and labels.shape[-1] == NUM_LABELS and labels.dtype.kind == "f":
        labels = labels.argmax(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_LABELS):
        # Clipping would paint a wrong label in a right-looking colour.
        raise ValueError(f"labels must be in 0..{NUM_LABELS - 1}, got {labels.min()}..{labels.max()}")
    return PALETTE[labels.astype(np.int64)]
