"""One object per training stage: everything the generic loop needs to run it.

A :class:`Stage` says which networks the stage needs, which earlier stages it
initialises them from, its dataset, its optimizers, its stage model (the
``keras.Model`` with the ``train_step``, :mod:`spt_tf.training.stages`), its
image summaries and its end-of-stage validation. :data:`STAGES` maps each name
to its object; adding a stage is one subclass and one entry there.

Validation on real data (P's PCKh, the parser's mIoU) is injected: the loop
receives ``validators`` (``{"pose_detector": fn, "parser": fn}``, each
``fn(config, network, split) -> dict``), so training imports nothing from
evaluation; ``spt_tf.evaluation.stage_validators()`` gives the project's.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

from spt_tf import composite, geometry, labels, networks
from spt_tf.data import pipeline
from spt_tf.training import guard
from spt_tf.training import stages as stages_lib


def _adam(rate, config, precision, paper_betas=True):
    if paper_betas:
        opt = keras.optimizers.Adam(learning_rate=float(rate), beta_1=float(config.train.beta_1),
                                    beta_2=float(config.train.beta_2))  # fmt: skip
    else:  # plain supervised training: Keras' default betas
        opt = keras.optimizers.Adam(learning_rate=float(rate))
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _supervised_optimizers(rate, config, precision) -> dict:
    """Plain supervised training (P, the parser): Keras' default betas, no discriminator."""
    return {"g_optimizer": _adam(rate, config, precision, paper_betas=False), "d_optimizer": None,
            "h_optimizer": None}  # fmt: skip


def image_grid(batch, out: dict, num: int = 4) -> tf.Tensor:
    """[1, num*h, 6*w, 3] uint8 grid rows: source | target skeleton | predicted
    parsing | generated | cycle | ground truth (or blank)."""
    palette = tf.constant(labels.PALETTE, tf.float32) / 127.5 - 1.0

    def col(par):
        return tf.gather(palette, tf.argmax(par, -1))

    src = batch["image"][:num]
    skel = tf.reduce_max(batch["target_pose"][:num], -1, keepdims=True) * 2.0 - 1.0
    skel = tf.tile(skel, [1, 1, 1, 3])
    cols = [src, skel, col(out["target_parsing"][:num]), out["fake_target"][:num], out["fake_source"][:num]]
    cols.append(batch["target_image"][:num] if "target_image" in batch else tf.zeros_like(src))
    grid = tf.concat(cols, 2)
    grid = tf.concat(tf.unstack(grid), 0)[None]
    return tf.cast(tf.clip_by_value((grid + 1.0) * 127.5, 0, 255), tf.uint8)


def parser_grid(images, truth, logits, num: int = 4) -> tf.Tensor:
    """[1, num*h, 3*w, 3] uint8 grid rows: image | true parsing | predicted parsing (colours)."""
    palette = tf.constant(labels.PALETTE, tf.uint8)
    img = tf.cast(tf.clip_by_value((images[:num] + 1.0) * 127.5, 0, 255), tf.uint8)
    cols = [img, tf.gather(palette, tf.cast(truth[:num], tf.int32)), tf.gather(palette, tf.argmax(logits[:num], -1))]
    grid = tf.concat(cols, 2)
    return tf.concat(tf.unstack(grid), 0)[None]


def _test_batch(config, n):
    try:
        return next(iter(pipeline.test_dataset(config, batch_size=n, max_pairs=n)))
    except (FileNotFoundError, OSError, ValueError) as e:
        logging.warning("no test pairs for image summaries / validation: %s", e)
        return None


def _validate_on_test_split(stage, evaluate, writer, step, scalars, describe):
    """Runs ``evaluate()`` on the test split, logs ``scalars(result)`` under validation/;
    None (and a warning) when the split cannot be read."""
    try:
        result = evaluate()
    except (FileNotFoundError, OSError, ValueError) as e:
        logging.warning("%s stage: no validation on the test split: %s", stage, e)
        return None
    with writer.as_default(step=step):
        for name, value in scalars(result).items():
            tf.summary.scalar(f"validation/{name}", value)
    logging.info("%s stage: test split (%d images): %s", stage, result["images"], describe(result))
    return result


def _injected(validators, key, stage):
    fn = (validators or {}).get(key)
    if fn is None:
        logging.warning("stage %s: no %s validator given; its result on the test split is not measured", stage, key)
    return fn


# What each stage after `appearance` takes over from the stage before it.
_GENERATOR_NETWORKS = ("hs", "ds", "ha", "da", "dface")


class Stage:
    """A training stage. Subclasses set the class attributes and the methods that differ."""

    name: str = ""
    # {earlier stage: network keys it initialises}, and the one stage that must have run.
    init_from: dict = {}
    required: str | None = None
    # Generator stages: pose-loss check, H_A image summaries and the guard.
    generates = False
    # Stages that train H_S together with H_A (Algorithm 1's step 3) give it an optimizer of its own.
    trains_hs_with_ha = False

    def network_keys(self, config) -> tuple[str, ...]:
        return networks.spt_keys(config)

    def model(self, nets, config, global_batch: int, xla: bool) -> stages_lib.StageModel:
        raise NotImplementedError

    def dataset(self, config, ctx) -> tf.data.Dataset:
        raise NotImplementedError

    def optimizers(self, config, precision) -> dict:
        """``{"g_optimizer", "d_optimizer", "h_optimizer"}`` for ``StageModel.compile``."""
        rate = config.train.learning_rate
        return {"g_optimizer": _adam(rate, config, precision), "d_optimizer": _adam(rate, config, precision),
                "h_optimizer": None}  # fmt: skip

    def alpha(self, config, step: int) -> float | None:
        """The progressive generator's fade-in at ``step``; None when it does not apply."""
        return None

    def write_images(self, model, config, writer, step: int) -> None:
        """Image summaries at ``step`` (none by default)."""

    def validate(self, model, config, writer, step: int, validators=None) -> dict | None:
        """End-of-stage validation written under ``validation/``; a dict to keep in the summary, or None."""
        return None


class PoseDetectorStage(Stage):
    name = "pose_detector"

    def model(self, nets, config, global_batch, xla):
        return stages_lib.PoseDetectorStage(nets.pose_detector, global_batch, xla)

    def dataset(self, config, ctx):
        return pipeline.pose_dataset(config, ctx)

    def optimizers(self, config, precision):
        return _supervised_optimizers(config.train.pose_detector_learning_rate, config, precision)

    def validate(self, model, config, writer, step, validators=None):
        """P's PCKh on the real images of the test split; None without one."""
        fn = _injected(validators, "pose_detector", self.name)
        if fn is None:
            return None
        return _validate_on_test_split(
            "pose detector", lambda: fn(config, model.pose_detector, "test"), writer, step,
            lambda r: {"pose_detector_pckh": r["pckh"]}, lambda r: f"PCKh {r['pckh']:.4f}",
        )  # fmt: skip


class ParserStage(Stage):
    """The human parser for custom photos: not part of Algorithm 1, builds and saves nothing else."""

    name = "parser"

    def network_keys(self, config):
        return ("parser",)

    def model(self, nets, config, global_batch, xla):
        return stages_lib.ParserStage(nets.parser, global_batch, xla)

    def dataset(self, config, ctx):
        return pipeline.parsing_dataset(config, "train", ctx, training=True)

    def optimizers(self, config, precision):
        return _supervised_optimizers(config.train.parser_learning_rate, config, precision)

    def write_images(self, model, config, writer, step):
        try:
            batch = next(iter(pipeline.parsing_dataset(config, "test", batch_size=4, training=False)))
        except (FileNotFoundError, OSError, ValueError) as e:
            logging.warning("no test images for parser image summaries: %s", e)
            return
        grid = parser_grid(batch["image"], batch["parsing"], model.parser(batch["image"], training=False))
        with writer.as_default(step=step):
            tf.summary.image("samples", grid, max_outputs=1)

    def validate(self, model, config, writer, step, validators=None):
        """The parser's mIoU / pixel accuracy on the whole test split; None without one."""
        fn = _injected(validators, "parser", self.name)
        if fn is None:
            return None
        return _validate_on_test_split(
            "parser", lambda: fn(config, model.parser, "test"), writer, step,
            lambda r: {"parser_miou": r["miou"], "parser_pixel_accuracy": r["pixel_accuracy"],
                       "all_background_pixel_accuracy": r["all_background"]["pixel_accuracy"]},
            lambda r: (f"mIoU {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f} "
                       f"(all background: {r['all_background']['pixel_accuracy']:.4f})"),
        )  # fmt: skip


class SemanticStage(Stage):
    """H_S and D_S on the pseudo pairs (Eq. 3-5)."""

    name = "semantic"

    def model(self, nets, config, global_batch, xla):
        return stages_lib.SemanticStage(nets.hs, nets.ds, config, global_batch, xla)

    def dataset(self, config, ctx):
        return pipeline.train_dataset(config, ctx, pseudo_pairs=True)

    def optimizers(self, config, precision):
        rate = config.train.semantic_learning_rate
        return {"g_optimizer": _adam(rate, config, precision), "d_optimizer": _adam(rate, config, precision),
                "h_optimizer": None}  # fmt: skip

    def validate(self, model, config, writer, step, validators=None):
        """H_S's pixel accuracy on a few test pairs (a TensorBoard scalar)."""
        batch = _test_batch(config, int(config.eval.batch_size))
        if batch is None:
            return None
        src = geometry.one_hot_parsing(batch["parsing"], int(config.model.num_labels))
        pred = composite.predict_parsing(model.hs, src, batch)
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(pred, -1), tf.cast(batch["target_parsing"], tf.int64)),
                                     tf.float32))  # fmt: skip
        with writer.as_default(step=step):
            tf.summary.scalar("validation/parsing_pixel_accuracy", acc)
        return None


class GeneratorStage(Stage):
    """H_A (and in the later stages H_S) with L_A (Eq. 10): appearance, joint, progressive."""

    generates = True
    phase_of_progressive = "global"  # the progressive generator's variables this stage trains

    def model(self, nets, config, global_batch, xla):
        target = {"ts_gt": "ground_truth", "baseline": "none"}.get(config.train.ablation, "predicted")
        phase = self.phase_of_progressive if config.model.progressive else "all"
        return stages_lib.AppearanceStage(
            nets.hs, nets.ha, nets.da, nets.dface, nets.pose_detector, nets.vgg, config, global_batch, xla,
            train_hs=self.trains_hs_with_ha, target_source=target, phase=phase,
        )  # fmt: skip

    def dataset(self, config, ctx):
        ablation = config.train.ablation
        if self.trains_hs_with_ha and float(config.loss.joint_semantic_weight) > 0 and ablation != "ts_gt":
            # H_S keeps its pseudo-label cross entropy: the target pose is the pseudo pair's.
            return pipeline.train_dataset(config, ctx, pseudo_pairs=True)
        return pipeline.train_dataset(config, ctx, gt_pairs=(ablation == "ts_gt"))

    def optimizers(self, config, precision):
        opts = super().optimizers(config, precision)
        if self.trains_hs_with_ha:  # H_S moves at a rate of its own where it trains with H_A
            opts["h_optimizer"] = _adam(config.train.joint_semantic_learning_rate, config, precision)
        return opts

    def alpha(self, config, step):
        return 0.0 if config.model.progressive else None

    def write_images(self, model, config, writer, step):
        batch = _test_batch(config, 4)
        if batch is None:
            return
        out = model.generate(batch, training=False)
        real = batch["target_image"] if "target_image" in batch else batch["image"]
        health = guard.image_health(out["fake_target"].numpy(), real.numpy())
        with writer.as_default(step=step):
            tf.summary.image("samples", image_grid(batch, out), max_outputs=1)
            for key, value in health.items():
                tf.summary.scalar(f"guard/{key}", value)
        for problem in guard.problems(health, float(config.train.guard_max_high_frequency_ratio),
                                      float(config.train.guard_min_contrast_ratio)):  # fmt: skip
            logging.warning("stage %s, step %d: %s", self.name, step, problem)

    def validate(self, model, config, writer, step, validators=None):
        """L1 of the generated targets on a few test pairs (a TensorBoard scalar)."""
        batch = _test_batch(config, int(config.eval.batch_size))
        if batch is None:
            return None
        out = model.generate(batch, training=False)
        l1 = tf.reduce_mean(tf.abs(out["fake_target"] - batch["target_image"])) / 2.0
        with writer.as_default(step=step):
            tf.summary.scalar("validation/l1", l1)
        return None


class AppearanceStage(GeneratorStage):
    """H_A with H_S frozen (Algorithm 1's step 2)."""

    name = "appearance"
    init_from = {"pose_detector": ("pose_detector",), "semantic": ("hs", "ds")}


class JointStage(GeneratorStage):
    """H_S and H_A end to end (Algorithm 1's step 3)."""

    name = "joint"
    init_from = {"pose_detector": ("pose_detector",), "appearance": _GENERATOR_NETWORKS}
    required = "appearance"
    trains_hs_with_ha = True


class ProgressiveLocalStage(GeneratorStage):
    """``model.progressive``: the local enhancer fades in over ``train.fade_steps``, alone."""

    name = "progressive_local"
    init_from = {"pose_detector": ("pose_detector",), "joint": _GENERATOR_NETWORKS}
    required = "joint"
    trains_hs_with_ha = True
    phase_of_progressive = "local"

    def alpha(self, config, step):
        return min(1.0, step / max(1, int(config.train.fade_steps)))


class ProgressiveAllStage(GeneratorStage):
    """``model.progressive``: everything at full resolution."""

    name = "progressive_all"
    init_from = {"pose_detector": ("pose_detector",), "progressive_local": _GENERATOR_NETWORKS}
    required = "progressive_local"
    trains_hs_with_ha = True
    phase_of_progressive = "all"

    def alpha(self, config, step):
        return 1.0


STAGES = {s.name: s for s in (PoseDetectorStage(), SemanticStage(), AppearanceStage(), JointStage(),
                               ProgressiveLocalStage(), ProgressiveAllStage(), ParserStage())}  # fmt: skip


def get(name: str) -> Stage:
    """The stage object of ``name``."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; one of {tuple(STAGES)}")
    return STAGES[name]
