"""The stages of Algorithm 1 (and the human parser's, apart) as keras.Models with a custom `train_step`.

Each stage model owns its networks, takes `compile(g_optimizer=..., d_optimizer=...,
h_optimizer=...)`, and returns its loss values (`loss_names`) from `train_step`.
The loop around them is explicit (`spt_tf.training.loop`), not `fit()`: it
needs several optimizers per step, checkpoints that resume mid-stage with their
slots, a NaN guard before each save and SIGTERM handling; it logs the values a
step returns, so the stage models keep no metric state.

`train_step(batch)` runs inside a replica (the loop calls it through
`strategy.run`). It computes the generator and discriminator gradients from ONE
forward pass at the same weights (the pix2pix-tutorial scheme; the release
steps G then D sequentially, which costs a second forward pass), then applies
them. When `xla` is on, the forward and backward are one `jit_compile=True`
function and the gradients are applied outside XLA: the recipe that works
across replicas (``jit_compile`` around a whole multi-replica step fails with a
cross-device resource error). Per-example losses are averaged over the GLOBAL
batch, so the optimizers' cross-replica sum gives the global mean.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spt_tf import composite, geometry, losses, networks
from spt_tf.data import pipeline


def _avg(per_example, global_batch):
    return tf.nn.compute_average_loss(tf.cast(per_example, tf.float32), global_batch_size=global_batch)


class StageModel(keras.Model):
    """Shared machinery: optimizers and the XLA gradient function."""

    loss_names: tuple[str, ...] = ()

    def __init__(self, global_batch_size: int, xla: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.global_batch_size = int(global_batch_size)
        self.xla = bool(xla)
        self._grad_fn = None

    def compile(self, g_optimizer, d_optimizer=None, h_optimizer=None, **kwargs):
        """``h_optimizer`` updates ``h_variables()`` (H_S in the joint stage: its own rate)."""
        super().compile(**kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.h_optimizer = h_optimizer
        if self.h_variables() and h_optimizer is None:
            raise ValueError(f"{type(self).__name__} trains H_S too: compile it with h_optimizer")

    # Subclasses define these.
    def g_variables(self):
        raise NotImplementedError

    def d_variables(self):
        return []

    def h_variables(self):
        """Generator-side variables with an optimizer of their own (``h_optimizer``)."""
        return []

    def compute_losses(self, batch):
        """-> (g_total, d_total, {name: scalar}) for one replica's batch."""
        raise NotImplementedError

    def build_optimizers(self):
        """Creates optimizer slots (inside the strategy scope, before step 1)."""
        self.g_optimizer.build(self.g_variables())
        if self.d_optimizer is not None and self.d_variables():
            self.d_optimizer.build(self.d_variables())
        if self.h_variables():
            self.h_optimizer.build(self.h_variables())

    def _gradients(self, batch):
        g_vars, d_vars = self.g_variables(), self.d_variables()
        with tf.GradientTape(persistent=True) as tape:
            g_total, d_total, values = self.compute_losses(batch)
            g_scaled = _scale(self.g_optimizer, g_total)
            d_scaled = _scale(self.d_optimizer, d_total) if d_vars else None
            h_vars = self.h_variables()
            h_scaled = _scale(self.h_optimizer, g_total) if h_vars else None
        g_grads = tape.gradient(g_scaled, g_vars)
        d_grads = tape.gradient(d_scaled, d_vars) if d_vars else []
        h_grads = tape.gradient(h_scaled, h_vars) if h_vars else []
        del tape
        return g_grads, d_grads, h_grads, values

    def train_step(self, batch):
        if self._grad_fn is None:
            self._grad_fn = tf.function(self._gradients, jit_compile=self.xla)
        # Names (strings) stay out of the XLA cluster.
        batch = {k: v for k, v in batch.items() if v.dtype != tf.string}
        g_grads, d_grads, h_grads, values = self._grad_fn(batch)
        self.g_optimizer.apply_gradients(zip(g_grads, self.g_variables()))
        if d_grads:
            self.d_optimizer.apply_gradients(zip(d_grads, self.d_variables()))
        if h_grads:
            self.h_optimizer.apply_gradients(zip(h_grads, self.h_variables()))
        # Values are global-batch averages of this replica's share; the loop
        # sums them over replicas and logs them.
        return values


def _scale(optimizer, loss):
    if optimizer is not None and isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.scale_loss(loss)
    return loss


class PoseDetectorStage(StageModel):
    """Trains the pose detector P on the dataset's keypoint heatmaps."""

    loss_names = ("pose_detector",)

    def __init__(self, pose_detector, global_batch_size, xla=False, **kwargs):
        super().__init__(global_batch_size, xla, **kwargs)
        self.pose_detector = pose_detector

    def g_variables(self):
        return self.pose_detector.trainable_variables

    def compute_losses(self, batch):
        pred = self.pose_detector(batch["image"], training=True)
        loss = _avg(losses.pose_detector_loss(pred, batch["heatmaps"]), self.global_batch_size)
        return loss, tf.constant(0.0), {"pose_detector": loss}


class ParserStage(StageModel):
    """Trains the human parser on the dataset's parsing maps (not part of Algorithm 1).

    Loss: per-pixel cross entropy of the logits against the label map
    (:func:`spt_tf.losses.parser_loss`); the training pixel accuracy is tracked
    beside it.
    """

    loss_names = ("parser_ce", "parser_pixel_accuracy")

    def __init__(self, parser, global_batch_size, xla=False, **kwargs):
        super().__init__(global_batch_size, xla, **kwargs)
        self.parser = parser

    def g_variables(self):
        return self.parser.trainable_variables

    def compute_losses(self, batch):
        logits = self.parser(batch["image"], training=True)
        ce = _avg(losses.parser_loss(batch["parsing"], logits), self.global_batch_size)
        hit = tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(batch["parsing"], tf.int32))
        accuracy = _avg(tf.reduce_mean(tf.cast(hit, tf.float32), axis=[1, 2]), self.global_batch_size)
        return ce, tf.constant(0.0), {"parser_ce": ce, "parser_pixel_accuracy": accuracy}


class SemanticStage(StageModel):
    """H_S and D_S on pseudo pairs: L_S = L_adv + lambda_ce L_ce (Eq. 4)."""

    loss_names = ("hs_adv", "hs_ce", "hs_total", "ds_loss")

    def __init__(self, hs, ds, config, global_batch_size, xla=False, **kwargs):
        super().__init__(global_batch_size, xla, **kwargs)
        self.hs, self.ds = hs, ds
        self.gan = config.loss.gan
        self.lambda_ce = float(config.loss.lambda_ce)
        self.lambda_adv = float(config.loss.lambda_adv)
        self.num_labels = int(config.model.num_labels)

    def g_variables(self):
        return self.hs.trainable_variables

    def d_variables(self):
        return self.ds.trainable_variables

    def compute_losses(self, batch):
        gb = self.global_batch_size
        src = geometry.one_hot_parsing(batch["parsing"], self.num_labels)
        tgt = geometry.one_hot_parsing(batch["target_parsing"], self.num_labels)
        pred = composite.predict_parsing(self.hs, src, batch, training=True)
        pose = batch["target_pose"]
        fake_logits = self.ds(tf.concat([pred, pose], -1), training=True)
        real_logits = self.ds(tf.concat([tgt, pose], -1), training=True)
        fake_d = self.ds(tf.concat([tf.stop_gradient(pred), pose], -1), training=True)
        adv = _avg(losses.generator_loss(self.gan, fake_logits), gb)
        ce = _avg(losses.weighted_cross_entropy(tgt, pred, batch["target_mask"]), gb)
        g_total = self.lambda_adv * adv + self.lambda_ce * ce
        d_total = _avg(losses.discriminator_loss(self.gan, real_logits, fake_d), gb)
        return g_total, d_total, {"hs_adv": adv, "hs_ce": ce, "hs_total": g_total, "ds_loss": d_total}


class AppearanceStage(StageModel):
    """H_A, D_A, D_face with L_A (Eq. 10) and the cycle; H_S frozen or joint.

    Forward: S~t = H_S(S_s, p_s, p_t); I~t = H_A(I_s, S_s, p_s, S~t, p_t);
    back: S~s = H_S(S~t, p_t, p_s); I~s = H_A(I~t, S~t, p_t, S~s, p_s).
    `train_hs=True` is the joint stage (end to end). `target_source`:
    "predicted" (E2E / TS-Pred), "ground_truth" (TS-GT: the batch's real
    target parsing), or "none" (Baseline: no parsing, zeros).
    """

    loss_names = (
        "ha_adv", "ha_pose", "ha_content", "ha_style", "ha_face", "ha_cycle", "ha_identity", "ha_total",
        "da_loss", "dface_loss", "hs_ce",
    )  # fmt: skip

    def __init__(
        self, hs, ha, da, dface, pose_detector, vgg, config, global_batch_size, xla=False,
        train_hs=False, target_source="predicted", phase="all", **kwargs,
    ):  # fmt: skip
        super().__init__(global_batch_size, xla, **kwargs)
        # Progressive H_A (the paper, Sec. 4.1): "global", "local" or "all" variables.
        self.phase = phase
        if phase != "all" and not hasattr(ha, "variables_for_phase"):
            raise ValueError(f"phase {phase!r} needs the progressive generator (model.progressive=True)")
        self.hs, self.ha, self.da, self.dface = hs, ha, da, dface
        self.pose_detector, self.vgg = pose_detector, vgg
        self.train_hs = bool(train_hs)
        if target_source not in ("predicted", "ground_truth", "none"):
            raise ValueError(f"target_source must be predicted, ground_truth or none, got {target_source!r}")
        self.target_source = target_source
        c = config
        self.gan = c.loss.gan
        self.w = {
            "adv": float(c.loss.lambda_adv), "pose": float(c.loss.lambda_pose),
            "content": float(c.loss.lambda_cont), "style": float(c.loss.lambda_sty),
            "face": float(c.loss.lambda_face), "cycle": float(c.loss.lambda_cycle),
            "identity": float(c.loss.lambda_identity),
            # The joint stage keeps H_S's cross entropy against the pseudo label
            # (loss.joint_semantic_weight x loss.lambda_ce; needs target_parsing in the batch).
            "semantic": float(c.loss.joint_semantic_weight) * float(c.loss.lambda_ce) if train_hs else 0.0,
        }  # fmt: skip
        self.identity_region = c.loss.identity_region
        self.identity_mirror = float(c.loss.identity_mirror_fraction)
        if not 0.0 <= self.identity_mirror <= 1.0:
            raise ValueError(f"loss.identity_mirror_fraction must be in [0, 1], got {self.identity_mirror}")
        self.sigma, self.mask_radius = float(c.data.sigma), float(c.data.mask_radius)
        if self.identity_region not in ("image", "person"):
            raise ValueError(f"loss.identity_region must be image or person, got {self.identity_region!r}")
        self.style = c.loss.style
        self.style_labels = tuple(int(x) for x in c.loss.style_labels)
        self.features = networks.perceptual_features(c)
        if self.features == "vgg" and vgg is None:
            raise ValueError("loss.features='vgg' needs the VGG network (models.build_vgg)")
        self.dilations = tuple(int(d) for d in c.loss.statistics_dilations)
        self.cycle_through_target = bool(c.loss.cycle_through_target)
        self.num_labels = int(c.model.num_labels)
        self.face_size = int(c.model.face_crop_size)
        self.height, self.width = int(c.data.height), int(c.data.width)

    def g_variables(self):
        if hasattr(self.ha, "variables_for_phase"):
            v = list(self.ha.variables_for_phase(self.phase))
        else:
            v = list(self.ha.trainable_variables)
        return v

    def h_variables(self):
        return list(self.hs.trainable_variables) if self.train_hs else []

    def d_variables(self):
        v = list(self.da.trainable_variables)
        if self.dface is not None:
            v += self.dface.trainable_variables
        return v

    def generate(self, batch, training=False):
        """The forward and cycle passes. Returns a dict of tensors."""
        src = geometry.one_hot_parsing(batch["parsing"], self.num_labels)
        if self.target_source == "none":
            src = tf.zeros_like(src)
            tgt = src
            back = src
        else:
            if self.target_source == "ground_truth":
                tgt = geometry.one_hot_parsing(batch["target_parsing"], self.num_labels)
            else:
                tgt = composite.predict_parsing(self.hs, src, batch, training=training and self.train_hs)
            if not self.train_hs:
                tgt = tf.stop_gradient(tgt)
            back = self.hs(
                composite.hs_inputs(tgt, batch["target_pose"], batch["target_mask"], batch["source_pose"],
                          batch["source_mask"]),
                training=training and self.train_hs,
            )  # fmt: skip
            if not self.train_hs:
                back = tf.stop_gradient(back)
        fake_t = composite.render(self.ha, batch["image"], src, tgt, batch, training=training)
        back_tr = geometry.part_transforms(batch["target_keypoints"], batch["keypoints"])
        back_masks = geometry.part_masks(batch["keypoints"], self.height, self.width)
        # Without the gradient through the generated target, the cycle teaches H_A to
        # render a real image (I_s) from a generated one, and cannot reward hiding the
        # source in the target's pixels (loss.cycle_through_target).
        # The same holds for the parsings: without it the cycle rewards an H_S that copies
        # the source's layout (the cycle is trivial then) in the joint stage.
        cycle_in, cycle_tgt, cycle_back = fake_t, tgt, back
        if not self.cycle_through_target:
            cycle_in, cycle_tgt, cycle_back = (tf.stop_gradient(t) for t in (fake_t, tgt, back))
        fake_s = self.ha(
            composite.ha_inputs(
                cycle_in, cycle_tgt, batch["target_pose"], cycle_back, batch["source_pose"], back_tr, back_masks
            ),
            training=training,
        )
        out = {"source_parsing": src, "target_parsing": tgt, "back_parsing": back,
               "fake_target": fake_t, "fake_source": fake_s}  # fmt: skip
        if training and self.w["identity"] > 0:
            # Self-reconstruction: the source rendered in its own pose and parsing.
            if self.identity_mirror > 0:
                out["identity"] = self._mirrored_identity(batch, src, back_masks, training)
            else:
                same_tr = geometry.part_transforms(batch["keypoints"], batch["keypoints"])
                out["identity"] = self.ha(
                    composite.ha_inputs(batch["image"], src, batch["source_pose"], src, batch["source_pose"],
                                        same_tr, back_masks),
                    training=training,
                )  # fmt: skip
        return out

    def _mirrored_identity(self, batch, src, masks, training):
        """The self-reconstruction, its source mirrored for ``loss.identity_mirror_fraction`` of the examples.

        A mirrored example's source is the image flipped left-right with its parsing's
        and joints' sides swapped (``pipeline.mirror_person``): a person in its own
        right, whose left arm is the image's right arm. Rendering it into the image's
        own parsing and pose asks the deformable skips to carry each part through a
        real warp (``geometry.pair_conditioning`` of the two poses) and the decoder to
        mend what a warp gets wrong, with the image itself as the answer.
        """
        kp = batch["keypoints"]
        m_image, m_parsing, m_kp = pipeline.mirror_person(batch["image"], src, kp)
        pick = tf.random.uniform(tf.shape(kp)[:1]) < self.identity_mirror
        image = tf.where(pick[:, None, None, None], m_image, batch["image"])
        parsing = tf.where(pick[:, None, None, None], m_parsing, src)
        source_kp = tf.where(pick[:, None, None], m_kp, kp)
        cond = geometry.pair_conditioning(source_kp, kp, self.height, self.width, self.sigma, self.mask_radius)
        return self.ha(
            composite.ha_inputs(image, parsing, cond["source_pose"], src, batch["source_pose"], cond["transforms"],
                                masks),
            training=training,
        )  # fmt: skip

    def _content(self, fake, real, feat_fake, feat_real):
        if self.features == "vgg":
            return losses.content_loss(feat_fake, feat_real)
        return losses.content_loss(
            losses.image_statistics_features(fake, self.dilations),
            losses.image_statistics_features(real, self.dilations),
        )

    def _statistics_style(self, i1, s1, i2, s2, kp1, kp2):
        """Eq. 8 on the fixed colour / gradient statistics (loss.features='statistics')."""
        if self.style == "semantic":
            m1 = losses.label_masks(s1, self.style_labels)
            m2 = losses.label_masks(s2, self.style_labels)
        elif self.style in ("mask", "patch"):
            # Patches around joints have no region form here: both use the body-part masks.
            m1 = tf.transpose(geometry.part_masks(kp1, self.height, self.width), [0, 2, 3, 1])
            m2 = tf.transpose(geometry.part_masks(kp2, self.height, self.width), [0, 2, 3, 1])
        elif self.style == "none":
            return tf.zeros_like(i1[:, 0, 0, 0], tf.float32)
        else:
            raise ValueError(f"loss.style must be semantic, mask, patch or none, got {self.style!r}")
        return losses.statistics_style_loss(i1, m1, i2, m2, self.dilations)

    def _style(self, f1, s1, f2, s2, kp1, kp2):
        if self.style == "semantic":
            return losses.semantic_style_loss(f1, composite.hard(s1), f2, composite.hard(s2), labels=self.style_labels)
        if self.style == "mask":
            m1 = geometry.part_masks(kp1, self.height, self.width)
            m2 = geometry.part_masks(kp2, self.height, self.width)
            return losses.mask_style_loss(f1, m1, f2, m2)
        if self.style == "patch":
            return losses.patch_style_loss(
                f1, kp1, f2, kp2, (self.height, self.width), half_size=max(2, self.height // 16)
            )
        if self.style == "none":
            return tf.zeros_like(f1[:, 0, 0, 0], tf.float32)
        raise ValueError(f"loss.style must be semantic, mask, patch or none, got {self.style!r}")

    def compute_losses(self, batch):
        gb = self.global_batch_size
        out = self.generate(batch, training=True)
        src, tgt, back = out["source_parsing"], out["target_parsing"], out["back_parsing"]
        fake_t, fake_s = out["fake_target"], out["fake_source"]
        image = batch["image"]
        kp_s, kp_t = batch["keypoints"], batch["target_keypoints"]

        # Image discriminator on image (+) parsing.
        real = self.da(tf.concat([image, src], -1), training=True)
        f1 = self.da(tf.concat([fake_t, tgt], -1), training=True)
        f2 = self.da(tf.concat([fake_s, src], -1), training=True)
        adv = _avg(losses.generator_loss(self.gan, f1) + losses.generator_loss(self.gan, f2), gb)
        d1 = self.da(tf.concat([tf.stop_gradient(fake_t), tf.stop_gradient(tgt)], -1), training=True)
        d2 = self.da(tf.concat([tf.stop_gradient(fake_s), src], -1), training=True)
        da_loss = _avg(
            0.5 * (losses.discriminator_loss(self.gan, real, d1) + losses.discriminator_loss(self.gan, real, d2)), gb
        )

        pose = tf.constant(0.0)
        if self.w["pose"] > 0:  # P runs twice per step: skipped when its loss is off
            pose = _avg(
                losses.pose_loss(self.pose_detector(fake_t, training=False), batch["target_pose"])
                + losses.pose_loss(self.pose_detector(fake_s, training=False), batch["source_pose"]),
                gb,
            )
        if self.features == "vgg":
            feat_real = self.vgg(image, training=False)
            feat_t = self.vgg(fake_t, training=False)
            feat_s = self.vgg(fake_s, training=False)
            content = _avg(self._content(fake_s, image, feat_s, feat_real), gb)
            style = self._style(feat_real, src, feat_t, tgt, kp_s, kp_t) + self._style(
                feat_t, tgt, feat_s, back, kp_t, kp_s
            )
        else:
            content = _avg(self._content(fake_s, image, None, None), gb)
            style = self._statistics_style(image, src, fake_t, tgt, kp_s, kp_t) + self._statistics_style(
                fake_t, tgt, fake_s, back, kp_t, kp_s
            )
        style = _avg(style, gb)

        face = tf.constant(0.0)
        dface_loss = tf.constant(0.0)
        if self.dface is not None:
            n = self.face_size
            # Eq. 9 on the face crops of the generated target (target pose) and of the
            # cycle (source pose) against the source's real face; each crop counts only
            # where its own face box is valid (losses.face_*_loss).
            _, _, valid_s = geometry.face_boxes(kp_s)
            _, _, valid_t = geometry.face_boxes(kp_t)
            real_crop = geometry.crop_faces(image, kp_s, n)
            crop_t = geometry.crop_faces(fake_t, kp_t, n)
            crop_s = geometry.crop_faces(fake_s, kp_s, n)
            rf = self.dface(real_crop, training=True)
            face = _avg(
                losses.face_generator_loss(self.gan, self.dface(crop_t, training=True), valid_t)
                + losses.face_generator_loss(self.gan, self.dface(crop_s, training=True), valid_s),
                gb,
            )
            dt = self.dface(tf.stop_gradient(crop_t), training=True)
            ds = self.dface(tf.stop_gradient(crop_s), training=True)
            dface_loss = _avg(
                0.5 * (losses.face_discriminator_loss(self.gan, rf, dt, valid_s, valid_t)
                       + losses.face_discriminator_loss(self.gan, rf, ds, valid_s, valid_s)),
                gb,
            )  # fmt: skip

        # Pixel L1 of the cycle (loss.lambda_cycle; not in Eq. 10, see configs/base.py).
        cycle = _avg(losses.l1_loss(fake_s, image), gb)
        # Pixel L1 of the self-reconstruction (loss.lambda_identity; not in Eq. 10).
        identity = tf.constant(0.0)
        if "identity" in out:
            if self.identity_region == "person":  # the background of another photo is not the source's
                keep = 1.0 - src[..., :1]
                identity = _avg(losses.l1_loss(out["identity"] * keep, image * keep), gb)
            else:
                identity = _avg(losses.l1_loss(out["identity"], image), gb)
        hs_ce = tf.constant(0.0)
        if self.w["semantic"] > 0:
            if "target_parsing" not in batch:
                raise ValueError("loss.joint_semantic_weight > 0 needs pseudo pairs (target_parsing) in the batch")
            truth = geometry.one_hot_parsing(batch["target_parsing"], self.num_labels)
            hs_ce = _avg(losses.weighted_cross_entropy(truth, tgt, batch["target_mask"]), gb)
        w = self.w
        g_total = (w["adv"] * adv + w["pose"] * pose + w["content"] * content + w["style"] * style
                   + w["face"] * face + w["cycle"] * cycle + w["identity"] * identity
                   + w["semantic"] * hs_ce)  # fmt: skip
        d_total = da_loss + dface_loss
        values = {
            "ha_adv": adv, "ha_pose": pose, "ha_content": content, "ha_style": style, "ha_face": face,
            "ha_cycle": cycle, "ha_identity": identity, "ha_total": g_total, "da_loss": da_loss,
            "dface_loss": dface_loss, "hs_ce": hs_ce,
        }  # fmt: skip
        return g_total, d_total, values
