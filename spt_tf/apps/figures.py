"""Side-by-side figures of the applications: inputs, skeletons, parsing in colour, outputs.

Panels are uint8 RGB arrays of any size; :func:`side_by_side` scales every
panel to one height (nearest neighbour for small images, so pixels stay
visible), writes a caption above each and joins them into rows.
"""

from __future__ import annotations

import cv2
import numpy as np

from spt_tf import labels
from spt_tf.apps import keypoints as kp_lib
from spt_tf.skeleton import SKELETON  # the 17 COCO-18 links, TF-free

# One colour per link, OpenPose style (right side warm, left side cool).
LINK_COLOURS = (
    (255, 85, 0), (0, 170, 255), (255, 170, 0), (255, 255, 0), (0, 85, 255), (0, 0, 255),
    (255, 0, 85), (255, 0, 170), (255, 0, 255), (85, 255, 0), (0, 255, 85), (0, 255, 170),
    (200, 200, 200), (170, 255, 255), (120, 200, 255), (255, 255, 170), (255, 200, 120),
)  # fmt: skip

# Two caption lines above every panel.
CAPTION_LINE = 15
CAPTION_HEIGHT = 2 * CAPTION_LINE + 2


def draw_skeleton(keypoints: np.ndarray, shape: tuple[int, int] | None = None, image: np.ndarray | None = None,
                  thickness: int | None = None) -> np.ndarray:  # fmt: skip
    """Draws the COCO-18 skeleton of ``keypoints`` (``[18, 2]`` ``(y, x)``, ``-1`` missing).

    Args:
      keypoints: the pose, in the pixels of the canvas.
      shape: ``(H, W)`` of a black canvas (when ``image`` is None).
      image: uint8 ``[H, W, 3]`` to draw on (a copy is returned).
      thickness: line width in pixels (default: about 1/60 of the height).

    Returns:
      uint8 ``[H, W, 3]``.
    """
    if image is None:
        if shape is None:
            raise ValueError("give an image or a shape")
        canvas = np.zeros((int(shape[0]), int(shape[1]), 3), np.uint8)
    else:
        canvas = np.ascontiguousarray(image, dtype=np.uint8).copy()
    h = canvas.shape[0]
    t = max(1, int(round(h / 60))) if thickness is None else int(thickness)
    kp = np.asarray(keypoints, np.float64)
    ok = ~np.any(kp == kp_lib.MISSING, axis=-1)
    pts = [(int(round(x)), int(round(y))) for y, x in kp]
    for (a, b), colour in zip(SKELETON, LINK_COLOURS):
        if ok[a] and ok[b]:
            cv2.line(canvas, pts[a], pts[b], colour, t, lineType=cv2.LINE_AA)
    for i in np.flatnonzero(ok):
        cv2.circle(canvas, pts[i], t, (255, 255, 255), -1, lineType=cv2.LINE_AA)
    return canvas


def parsing_panel(parsing: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W]`` SPT labels -> uint8 ``[H, W, 3]`` colours (``labels.PALETTE``)."""
    return labels.colorize(parsing)


def _scale_to_height(image: np.ndarray, height: int) -> np.ndarray:
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, int(round(w * height / h)))
    interp = cv2.INTER_NEAREST if height > h else cv2.INTER_AREA
    return cv2.resize(image, (width, height), interpolation=interp)


def _caption(text: str, width: int) -> np.ndarray:
    """A white bar with ``text`` centred, wrapped on spaces into at most two lines."""
    bar = np.full((CAPTION_HEIGHT, width, 3), 255, np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4

    def size(t):
        return cv2.getTextSize(t, font, scale, 1)[0][0]

    lines = [""]
    for word in text.split(" "):
        trial = f"{lines[-1]} {word}".strip()
        if lines[-1] and size(trial) > width - 4 and len(lines) < 2:
            lines.append(word)
        else:
            lines[-1] = trial
    while max(size(t) for t in lines) > width - 4 and scale > 0.25:  # a long word: shrink to fit
        scale -= 0.05
    top = (2 - len(lines)) * CAPTION_LINE // 2
    for i, t in enumerate(lines):
        cv2.putText(bar, t, (max(2, (width - size(t)) // 2), top + (i + 1) * CAPTION_LINE - 3), font, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)  # fmt: skip
    return bar


def side_by_side(rows: list[list[tuple]], height: int = 192, gap: int = 4) -> np.ndarray:
    """Joins captioned panels into a figure.

    Args:
      rows: rows of ``(caption, uint8 [h, w, 3] panel)`` or ``(caption, panel,
        keypoints)``: ``[18, 2]`` ``(y, x)`` in the panel's pixels, drawn as a
        skeleton after scaling (thin lines on small photos).
      height: every panel is scaled to this height (aspect ratio kept).
      gap: white pixels between panels and rows.

    Returns:
      uint8 ``[H, W, 3]`` RGB figure (rows padded on the right to one width).
    """
    if not rows or not all(rows):
        raise ValueError("side_by_side needs at least one non-empty row of panels")
    built = []
    for row in rows:
        cols = []
        for caption, panel, *kp in row:
            panel = np.asarray(panel)
            if panel.ndim != 3 or panel.shape[2] != 3 or panel.dtype != np.uint8:
                raise ValueError(f"panel {caption!r} must be uint8 [H, W, 3], got {panel.dtype} {panel.shape}")
            p = _scale_to_height(panel, height)
            if kp and kp[0] is not None:
                k = np.asarray(kp[0], np.float64)
                scale = [p.shape[0] / panel.shape[0], p.shape[1] / panel.shape[1]]
                p = draw_skeleton(np.where(k == kp_lib.MISSING, kp_lib.MISSING, (k + 0.5) * scale - 0.5), image=p)
            cols.append(np.concatenate([_caption(caption, p.shape[1]), p], axis=0))
            cols.append(np.full((height + CAPTION_HEIGHT, gap, 3), 255, np.uint8))
        built.append(np.concatenate(cols[:-1], axis=1))
    width = max(r.shape[1] for r in built)
    out = []
    for r in built:
        r = np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
        out.extend([r, np.full((gap, width, 3), 255, np.uint8)])
    return np.concatenate(out[:-1], axis=0)
