"""The COCO-18 keypoint layout, without TensorFlow.

Keypoints everywhere in the project are ``(y, x)`` pixels in this order, ``-1``
for a missing joint. :mod:`spt_tf.geometry` re-exports these names; modules
that must not load TensorFlow (the synthetic generator's worker processes, the
pseudo-pair search, figures, the serving client) import them from here.
"""

from __future__ import annotations

KEYPOINT_NAMES = (
    "nose", "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rhip",
    "Rkne", "Rank", "Lhip", "Lkne", "Lank", "Leye", "Reye", "Lear", "Rear",
)  # fmt: skip
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
MISSING = -1.0

# Left <-> right permutation of the keypoints (for horizontal flips and the
# mirrored-part fallback).
MIRROR = tuple(
    KP[n.replace("R", "#").replace("L", "R").replace("#", "L")] if n[0] in "RL" else KP[n] for n in KEYPOINT_NAMES
)

# The 17 COCO-18 skeleton links (drawing, PCKh figures).
SKELETON = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# PG2 pose-mask limbs: the skeleton plus torso cross links, shoulder-ear and
# ear-ear links (the field's mask for mask-SSIM / mask-IS).
MASK_LIMBS = SKELETON + ((1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17))

# The 10 rigid parts of the deformable skip (pose-gan definition).
PART_NAMES = (
    "torso", "head", "Rhip-Rkne", "Lhip-Lkne", "Rkne-Rank", "Lkne-Lank",
    "Rsho-Relb", "Lsho-Lelb", "Relb-Rwri", "Lelb-Lwri",
)  # fmt: skip
NUM_PARTS = len(PART_NAMES)
TORSO = (KP["Rhip"], KP["Lhip"], KP["Lsho"], KP["Rsho"])
HEAD = (KP["nose"], KP["Leye"], KP["Reye"], KP["Lear"], KP["Rear"])
# (from, to, inc_to for the transform, inc_to for the mask)
LIMB_PARTS = (
    (KP["Rhip"], KP["Rkne"], 0.1, 0.1),
    (KP["Lhip"], KP["Lkne"], 0.1, 0.1),
    (KP["Rkne"], KP["Rank"], 0.3, 0.5),
    (KP["Lkne"], KP["Lank"], 0.3, 0.5),
    (KP["Rsho"], KP["Relb"], 0.1, 0.1),
    (KP["Lsho"], KP["Lelb"], 0.1, 0.1),
    (KP["Relb"], KP["Rwri"], 0.3, 0.5),
    (KP["Lelb"], KP["Lwri"], 0.3, 0.5),
)
INC_FROM = 0.1
