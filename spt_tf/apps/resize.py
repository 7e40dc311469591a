"""Arbitrary photo sizes: letterbox to the model's resolution and back.

A photo of any size is scaled by one factor (aspect ratio kept) so that it fits
the model's ``H x W``, then padded symmetrically to exactly ``H x W``. Keypoints
follow the same map; outputs at the model's resolution are cropped back to the
content and resized to the photo's size.

Coordinates follow the input pipeline's convention (``spt_tf.data.pipeline``):
a keypoint ``(y, x)`` of an image of height ``h`` becomes ``y * H' / h`` in an
image resized to height ``H'`` (no half-pixel shift). A dataset image with the
model's aspect ratio therefore gets no padding and exactly the keypoints the
training pipeline gave the network.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from spt_tf.skeleton import MISSING


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """The map from a photo of ``(src_h, src_w)`` to the model's ``(dst_h, dst_w)``.

    Attributes:
      src_h, src_w: the photo's size.
      dst_h, dst_w: the model's size.
      new_h, new_w: the photo's size after scaling (the content area).
      top, left: padding above / left of the content, in model pixels.
    """

    src_h: int
    src_w: int
    dst_h: int
    dst_w: int
    new_h: int
    new_w: int
    top: int
    left: int

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h

    @property
    def scale_x(self) -> float:
        return self.new_w / self.src_w

    @property
    def padded(self) -> bool:
        return (self.new_h, self.new_w) != (self.dst_h, self.dst_w)

    # ---------------------------------------------------------------- forward
    def image(self, image: np.ndarray, pad: str = "edge") -> np.ndarray:
        """uint8 ``[src_h, src_w, 3]`` -> ``[dst_h, dst_w, 3]``.

        Args:
          image: the photo.
          pad: ``"edge"`` repeats the border pixels (no hard frame the network
            never saw in training), or ``"constant"`` (black).
        """
        _check_shape(image, (self.src_h, self.src_w), "image")
        out = _resize(image, self.new_h, self.new_w, labels=False)
        mode = {"edge": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT}[pad]
        return self._pad(out, mode)

    def labels(self, labels: np.ndarray) -> np.ndarray:
        """uint8 ``[src_h, src_w]`` label map -> ``[dst_h, dst_w]`` (nearest; padding = 0, background)."""
        _check_shape(labels, (self.src_h, self.src_w), "label map")
        return self._pad(_resize(labels, self.new_h, self.new_w, labels=True), cv2.BORDER_CONSTANT)

    def keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        """``[..., 18, 2]`` ``(y, x)`` photo pixels -> model pixels; ``-1`` stays ``-1``."""
        kp = np.asarray(keypoints, np.float64)
        out = kp * [self.scale_y, self.scale_x] + [self.top, self.left]
        return np.where(kp == MISSING, MISSING, out).astype(np.float32)

    # ---------------------------------------------------------------- inverse
    def undo_image(self, image: np.ndarray) -> np.ndarray:
        """uint8 ``[dst_h, dst_w, 3]`` model output -> ``[src_h, src_w, 3]`` (padding cropped)."""
        _check_shape(image, (self.dst_h, self.dst_w), "model image")
        return _resize(self._crop(image), self.src_h, self.src_w, labels=False)

    def undo_labels(self, labels: np.ndarray) -> np.ndarray:
        """uint8 ``[dst_h, dst_w]`` model label map -> ``[src_h, src_w]`` (nearest)."""
        _check_shape(labels, (self.dst_h, self.dst_w), "model label map")
        return _resize(self._crop(labels), self.src_h, self.src_w, labels=True)

    def undo_keypoints(self, keypoints: np.ndarray) -> np.ndarray:
        """``[..., 18, 2]`` model pixels -> photo pixels; ``-1`` stays ``-1``."""
        kp = np.asarray(keypoints, np.float64)
        out = (kp - [self.top, self.left]) / [self.scale_y, self.scale_x]
        return np.where(kp == MISSING, MISSING, out).astype(np.float32)

    def in_content(self, keypoints: np.ndarray) -> np.ndarray:
        """``[..., 18]`` bool: model-pixel keypoints inside the content area (not the padding)."""
        kp = np.asarray(keypoints, np.float64)
        y, x = kp[..., 0], kp[..., 1]
        return (
            (y >= self.top - 0.5) & (y <= self.top + self.new_h - 0.5)
            & (x >= self.left - 0.5) & (x <= self.left + self.new_w - 0.5)
        )  # fmt: skip

    # ---------------------------------------------------------------- helpers
    def _pad(self, array, mode):
        bottom = self.dst_h - self.new_h - self.top
        right = self.dst_w - self.new_w - self.left
        if not (self.top or bottom or self.left or right):
            return array
        return cv2.copyMakeBorder(array, self.top, bottom, self.left, right, mode, value=0)

    def _crop(self, array):
        return array[self.top : self.top + self.new_h, self.left : self.left + self.new_w]


def fit(src_shape: tuple[int, int], dst_shape: tuple[int, int]) -> Letterbox:
    """The letterbox that fits a ``src_shape = (h, w)`` photo into ``dst_shape = (H, W)``.

    One scale ``s = min(H / h, W / w)``; the content is ``round(h s) x round(w s)``
    (at least 1 pixel), centred, the remainder padded.
    """
    h, w = (int(v) for v in src_shape[:2])
    dh, dw = (int(v) for v in dst_shape[:2])
    if min(h, w, dh, dw) <= 0:
        raise ValueError(f"sizes must be positive, got photo {(h, w)} and model {(dh, dw)}")
    s = min(dh / h, dw / w)
    new_h = min(dh, max(1, int(round(h * s))))
    new_w = min(dw, max(1, int(round(w * s))))
    return Letterbox(h, w, dh, dw, new_h, new_w, (dh - new_h) // 2, (dw - new_w) // 2)


def _check_shape(array, shape, what):
    if tuple(np.shape(array)[:2]) != tuple(shape):
        raise ValueError(f"{what} has size {tuple(np.shape(array)[:2])}, expected {tuple(shape)}")


def _resize(array: np.ndarray, h: int, w: int, labels: bool) -> np.ndarray:
    if array.shape[:2] == (h, w):
        return array.copy()
    if labels:
        interp = cv2.INTER_NEAREST
    else:
        # INTER_AREA when shrinking avoids aliasing; bilinear when enlarging. Unlike the training
        # pipeline's bilinear tf.image.resize (spt_tf/data/pipeline.py), on purpose: photos may be
        # many times the model's size, where bilinear without antialiasing aliases.
        interp = cv2.INTER_AREA if h * w < array.shape[0] * array.shape[1] else cv2.INTER_LINEAR
    out = cv2.resize(array, (w, h), interpolation=interp)
    return out.reshape((h, w) + array.shape[2:])
