"""SavedModel export for TF Serving: raw-data signatures, geometry inside the graph.

Clients send uint8 images, uint8 label maps and raw keypoints; every tensor the
networks see is made here by `spt_tf.geometry`, the code the input pipeline
uses, so serving cannot drift from training.

Signatures (batch dynamic; H, W fixed to the model's):
  serving_default   image u8[B,H,W,3], parsing u8[B,H,W], source_keypoints f32[B,18,2],
                    target_keypoints f32[B,18,2] -> image u8[B,H,W,3], parsing u8[B,H,W]
  transform_parsing parsing, source_keypoints, target_keypoints -> parsing   (H_S only)
  render            image, parsing, source_keypoints, target_keypoints, target_parsing
                    -> image   (H_A with an explicit target parsing: texture transfer,
                    parsing edits)
  serving_bytes     image_bytes str[B] (PNG/JPEG), parsing_bytes str[B] (PNG), keypoints
                    -> image_bytes str[B] (PNG), parsing_bytes str[B] (PNG)
  render_bytes      image_bytes, parsing_bytes, source_keypoints, target_keypoints,
                    target_parsing_bytes -> image_bytes
"""

from __future__ import annotations

import os
import shutil

import tensorflow as tf
from absl import logging

from spt_tf import composite, geometry, versions
from spt_tf import networks as networks_lib

SIGNATURES = ("serving_default", "transform_parsing", "render", "serving_bytes", "render_bytes")


class SPTExportModule(composite.PoseTransfer):
    """H_S and H_A behind raw-data signatures (the forward pass is :class:`composite.PoseTransfer`'s)."""

    def __init__(self, hs, ha, config, name="spt"):
        super().__init__(hs, ha, config, name=name)
        h, w = self.height, self.width
        img = tf.TensorSpec([None, h, w, 3], tf.uint8, name="image")
        par = tf.TensorSpec([None, h, w], tf.uint8, name="parsing")
        src = tf.TensorSpec([None, geometry.NUM_KEYPOINTS, 2], tf.float32, name="source_keypoints")
        tgt = tf.TensorSpec([None, geometry.NUM_KEYPOINTS, 2], tf.float32, name="target_keypoints")
        tpar = tf.TensorSpec([None, h, w], tf.uint8, name="target_parsing")
        byt = tf.TensorSpec([None], tf.string, name="image_bytes")
        pbyt = tf.TensorSpec([None], tf.string, name="parsing_bytes")
        tpbyt = tf.TensorSpec([None], tf.string, name="target_parsing_bytes")
        self.serving_default = tf.function(self.pose_transfer, input_signature=[img, par, src, tgt])
        self.transform_parsing = tf.function(self.transform_parsing, input_signature=[par, src, tgt])
        self.render = tf.function(self.render, input_signature=[img, par, src, tgt, tpar])
        self.serving_bytes = tf.function(self._pose_transfer_bytes, input_signature=[byt, pbyt, src, tgt])
        self.render_bytes = tf.function(self._render_bytes, input_signature=[byt, pbyt, src, tgt, tpbyt])

    # -- bytes ------------------------------------------------------------
    def _decode_images(self, data):
        def one(b):
            img = tf.io.decode_image(b, channels=3, expand_animations=False)
            tf.debugging.assert_equal(tf.shape(img)[:2], [self.height, self.width],
                                      message="image_bytes: image size differs from the model's")  # fmt: skip
            return tf.ensure_shape(img, [self.height, self.width, 3])

        return tf.map_fn(one, data, fn_output_signature=tf.TensorSpec([self.height, self.width, 3], tf.uint8))

    def _decode_labels(self, data, field):
        def one(b):
            lab = tf.io.decode_png(b, channels=1)
            tf.debugging.assert_equal(tf.shape(lab)[:2], [self.height, self.width],
                                      message=f"{field}: label map size differs from the model's")  # fmt: skip
            return tf.ensure_shape(lab[..., 0], [self.height, self.width])

        return tf.map_fn(one, data, fn_output_signature=tf.TensorSpec([self.height, self.width], tf.uint8))

    @staticmethod
    def _encode(images):
        return tf.map_fn(lambda x: tf.io.encode_png(x), images, fn_output_signature=tf.TensorSpec([], tf.string))

    def _pose_transfer_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints):
        out = self.pose_transfer(self._decode_images(image_bytes), self._decode_labels(parsing_bytes, "parsing_bytes"),
                                  source_keypoints, target_keypoints)  # fmt: skip
        return {"image_bytes": self._encode(out["image"]), "parsing_bytes": self._encode(out["parsing"][..., None])}

    def _render_bytes(self, image_bytes, parsing_bytes, source_keypoints, target_keypoints, target_parsing_bytes):
        out = self.render(self._decode_images(image_bytes), self._decode_labels(parsing_bytes, "parsing_bytes"),
                           source_keypoints, target_keypoints,
                           self._decode_labels(target_parsing_bytes, "target_parsing_bytes"))  # fmt: skip
        return {"image_bytes": self._encode(out["image"])}

    def signatures(self) -> dict:
        return {name: getattr(self, name) for name in SIGNATURES}


def save_atomically(module: SPTExportModule, export_dir: str, version: int | None = None) -> str:
    """Writes `export_dir/<version>/` via a temporary directory and a rename."""
    version = versions.next_version(export_dir) if version is None else int(version)
    final = os.path.join(export_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} already exists; choose another --version")
    os.makedirs(export_dir, exist_ok=True)
    tmp = os.path.join(export_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, tmp, signatures=module.signatures())
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logging.info("exported SavedModel version %d to %s", version, final)
    return final


def export(config, workdir: str | None, export_dir: str, checkpoint: str | None = None,
           version: int | None = None, networks=None) -> str:  # fmt: skip
    """Restores H_S and H_A from a checkpoint and writes a SavedModel version.

    Args:
      config: the run config (resolution, labels, geometry parameters).
      workdir: the training workdir (latest joint / appearance checkpoint).
      export_dir: base directory; the version goes to `export_dir/<N>/`.
      checkpoint: an explicit checkpoint path (overrides workdir).
      version: version number (default: next integer).
      networks: prebuilt `spt_tf.networks.Networks` with H_S and H_A (tests); restored in place.

    Returns:
      The version directory written.
    """
    nets = networks or networks_lib.Networks(config, ("hs", "ha"))
    path = checkpoint or networks_lib.latest_generator_checkpoint(workdir)
    networks_lib.restore(nets, path, ("hs", "ha"))
    logging.info("export: restored H_S and H_A from %s", path)
    return save_atomically(SPTExportModule(nets.hs, nets.ha, config), export_dir, version)
