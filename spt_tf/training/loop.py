"""`run(config, workdir, stage)`: the training loop around the stage models.

Per stage: a strategy-distributed dataset, the stage model with its networks
built and its optimizers built inside the strategy scope, a
`tf.train.CheckpointManager` under `WORKDIR/<stage>/`, TensorBoard summaries
under `WORKDIR/tensorboard/<stage>/`, a console progress bar, a NaN/Inf guard,
and SIGTERM/SIGINT handling (checkpoint, then a clean exit).

Stages start from the previous stages' checkpoints (the networks they need),
and resume from their own latest checkpoint at its step with optimizer state.

The ``parser`` stage trains the human parser for custom photos. It
is not part of Algorithm 1: ``--stage all`` never runs it, it needs no other
stage, and it builds, checkpoints and restores the parser alone
(:class:`ParserNetworks`); its checkpoints hold nothing else.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from spt_tf import geometry, labels
from spt_tf import models as spt_models
from spt_tf.data import pipeline
from spt_tf.evaluation import human_parser as parser_eval
from spt_tf.evaluation import pose_detector as pose_eval
from spt_tf.training import guard
from spt_tf.training import stages as stages_lib
from spt_tf.training import strategy as strategy_lib

STAGES = ("pose_detector", "semantic", "appearance", "joint")
# With model.progressive (DeepFashion 256): appearance and joint train the global
# generator (alpha 0), then the local enhancer fades in alone, then everything.
PROGRESSIVE_STAGES = ("progressive_local", "progressive_all")
# The human parser: run on its own (`--stage parser`), never by `--stage all`.
PARSER_STAGE = "parser"
ALL_STAGES = STAGES + PROGRESSIVE_STAGES + (PARSER_STAGE,)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; the last good checkpoint was kept."""


class Interrupted(Exception):
    """SIGTERM / SIGINT received; a checkpoint was written."""


def stages_for(config, stage: str) -> tuple[str, ...]:
    """The stages `--stage` runs, given the ablation (`train.ablation`).

    "all" is Algorithm 1 (never the parser stage, which is run by name).
    """
    if stage != "all":
        if stage not in ALL_STAGES:
            raise ValueError(f"--stage must be one of {ALL_STAGES + ('all',)}, got {stage!r}")
        if stage in PROGRESSIVE_STAGES and not config.model.progressive:
            raise ValueError(f"stage {stage} needs model.progressive=True")
        return (stage,)
    ablation = config.train.ablation
    if ablation == "e2e":
        return STAGES + (PROGRESSIVE_STAGES if config.model.progressive else ())
    if ablation in ("ts_pred", "ts_gt"):
        return ("pose_detector", "semantic", "appearance")
    if ablation == "baseline":
        return ("pose_detector", "appearance")
    raise ValueError(f"train.ablation must be e2e, ts_pred, ts_gt or baseline, got {ablation!r}")


def write_config(config, workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    return path


class _NetworkSet:
    """A set of networks saved in checkpoints as path-keyed variable maps."""

    def models(self) -> dict:
        raise NotImplementedError

    def trackables(self, names=None) -> dict:
        """Checkpoint children: each network's variables keyed by their path.

        Keras 3 layers held in Python lists are not children in TF's object
        graph, so checkpointing a model object would silently skip them; a
        path-keyed variable map saves every weight (non-trainable ones too).
        """
        return {k: variables_by_path(m) for k, m in self.models().items() if names is None or k in names}


class Networks(_NetworkSet):
    """Every network of SPT, built once per run inside the strategy scope."""

    def __init__(self, config):
        c = config
        h, w, L = int(c.data.height), int(c.data.width), int(c.model.num_labels)
        self.config = c
        self.pose_detector = spt_models.build_pose_detector(c)
        self.hs = spt_models.build_semantic_generator(c)
        self.ha = spt_models.build_appearance_generator(c)
        self.ds = spt_models.build_discriminator(c, L + geometry.NUM_KEYPOINTS)
        self.da = spt_models.build_discriminator(c, 3 + L)
        self.dface = spt_models.build_discriminator(c, 3) if int(c.model.face_crop_size) > 0 else None
        # VGG only where the content / style losses use it (loss.features).
        self.vgg = spt_models.build_vgg(c) if stages_lib.perceptual_features(c) == "vgg" else None
        self._build(h, w, L)

    def _build(self, h, w, L):
        """Creates every variable with one call on zeros (checkpoint restore needs them)."""
        kp = tf.fill([1, geometry.NUM_KEYPOINTS, 2], -1.0)
        cond = geometry.pair_conditioning(kp, kp, h, w)
        par = tf.zeros([1, h, w, L])
        img = tf.zeros([1, h, w, 3])
        self.pose_detector(img)
        self.hs(stages_lib.hs_inputs(par, cond["source_pose"], cond["source_mask"], cond["target_pose"],
                                     cond["target_mask"]))  # fmt: skip
        self.ha(stages_lib.ha_inputs(img, par, cond["source_pose"], par, cond["target_pose"], cond["transforms"],
                                     cond["part_masks"]))  # fmt: skip
        self.ds(tf.zeros([1, h, w, L + geometry.NUM_KEYPOINTS]))
        self.da(tf.zeros([1, h, w, 3 + L]))
        if self.dface is not None:
            n = int(self.config.model.face_crop_size)
            self.dface(tf.zeros([1, n, n, 3]))
        if self.vgg is not None:
            self.vgg(img)

    def models(self) -> dict:
        """The trained networks by checkpoint key (VGG is frozen and not saved)."""
        out = {"pose_detector": self.pose_detector, "hs": self.hs, "ha": self.ha, "ds": self.ds, "da": self.da}
        if self.dface is not None:
            out["dface"] = self.dface
        return out


class ParserNetworks(_NetworkSet):
    """The human parser alone (the parser stage builds and saves nothing else)."""

    def __init__(self, config):
        self.config = config
        self.parser = spt_models.build_human_parser(config)
        # One call on zeros creates every variable (checkpoint restore needs them).
        self.parser(tf.zeros([1, int(config.data.height), int(config.data.width), 3]))

    def models(self) -> dict:
        return {"parser": self.parser}


def variables_by_path(model) -> dict:
    """{variable path relative to the model: variable} for every weight of `model`.

    Raises:
      ValueError: two weights share a path (the checkpoint would be ambiguous).
    """
    prefix = model.name + "/"
    out = {}
    for v in model.weights:
        key = v.path[len(prefix):] if v.path.startswith(prefix) else v.path
        if key in out:
            raise ValueError(f"{model.name}: two weights share the path {key!r}")
        out[key] = v
    return out


def restore_networks(nets: "Networks", path: str, names) -> None:
    """Restores the networks `names` from a training checkpoint; every weight must match.

    Raises:
      AssertionError: a weight of those networks is missing from the checkpoint
        (`assert_existing_objects_matched` over the path-keyed variable maps).
    """
    status = tf.train.Checkpoint(**nets.trackables(names)).restore(path)
    status.expect_partial()
    status.assert_existing_objects_matched()


# Which networks a stage initialises from which earlier stage's checkpoint.
_INIT_FROM = {
    "pose_detector": {},
    "semantic": {},
    "appearance": {"pose_detector": ("pose_detector",), "semantic": ("hs", "ds")},
    "joint": {"pose_detector": ("pose_detector",), "appearance": ("hs", "ds", "ha", "da", "dface")},
    "progressive_local": {"pose_detector": ("pose_detector",), "joint": ("hs", "ds", "ha", "da", "dface")},
    "progressive_all": {"pose_detector": ("pose_detector",),
                        "progressive_local": ("hs", "ds", "ha", "da", "dface")},
    PARSER_STAGE: {},
}
# The stage a stage cannot start without.
_REQUIRED = {"joint": "appearance", "progressive_local": "joint", "progressive_all": "progressive_local"}


def _phase(config, stage) -> str:
    if not config.model.progressive:
        return "all"
    return {"progressive_local": "local", "progressive_all": "all"}.get(stage, "global")


def _alpha(config, stage, step) -> float:
    """Fade-in of the local enhancer: 0 before, ramps over train.fade_steps, then 1."""
    if stage in ("appearance", "joint"):
        return 0.0
    if stage == "progressive_local":
        return min(1.0, step / max(1, int(config.train.fade_steps)))
    return 1.0


def _optimizer(config, precision, stage=None):
    if stage == PARSER_STAGE:  # plain supervised training: Keras' default betas
        opt = keras.optimizers.Adam(learning_rate=float(config.train.parser_learning_rate))
    elif stage == "pose_detector":  # likewise
        opt = keras.optimizers.Adam(learning_rate=float(config.train.pose_detector_learning_rate))
    else:
        rate = {"semantic": config.train.semantic_learning_rate,
                "joint_semantic": config.train.joint_semantic_learning_rate}.get(stage, config.train.learning_rate)
        opt = keras.optimizers.Adam(
            learning_rate=float(rate),
            beta_1=float(config.train.beta_1),
            beta_2=float(config.train.beta_2),
        )
    if precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _steps(config, stage):
    return int(getattr(config.train, f"{stage}_steps"))


def _trains_hs_with_ha(stage) -> bool:
    """The stages after `appearance` train H_S together with H_A (Algorithm 1's step 3)."""
    return stage not in ("pose_detector", "semantic", "appearance", PARSER_STAGE)


def _stage_model(stage, nets: Networks, config, global_batch, xla):
    if stage == PARSER_STAGE:
        return stages_lib.ParserStage(nets.parser, global_batch, xla)
    if stage == "pose_detector":
        return stages_lib.PoseDetectorStage(nets.pose_detector, global_batch, xla)
    if stage == "semantic":
        return stages_lib.SemanticStage(nets.hs, nets.ds, config, global_batch, xla)
    ablation = config.train.ablation
    target = {"ts_gt": "ground_truth", "baseline": "none"}.get(ablation, "predicted")
    return stages_lib.AppearanceStage(
        nets.hs, nets.ha, nets.da, nets.dface, nets.pose_detector, nets.vgg, config, global_batch, xla,
        train_hs=_trains_hs_with_ha(stage), target_source=target, phase=_phase(config, stage),
    )  # fmt: skip


def _dataset_fn(stage, config):
    ablation = config.train.ablation

    def fn(ctx):
        if stage == "pose_detector":
            return pipeline.pose_dataset(config, ctx)
        if stage == PARSER_STAGE:
            return pipeline.parsing_dataset(config, "train", ctx, training=True)
        if stage == "semantic":
            return pipeline.train_dataset(config, ctx, pseudo_pairs=True)
        if stage != "appearance" and float(config.loss.joint_semantic_weight) > 0 and ablation != "ts_gt":
            # H_S keeps its pseudo-label cross entropy: the target pose is the pseudo pair's.
            return pipeline.train_dataset(config, ctx, pseudo_pairs=True)
        return pipeline.train_dataset(config, ctx, gt_pairs=(ablation == "ts_gt"))

    return fn


def _init_from_previous(stage, nets: Networks, workdir):
    for prev, names in _INIT_FROM[stage].items():
        ckpt_dir = os.path.join(workdir, prev)
        path = tf.train.latest_checkpoint(ckpt_dir)
        if path is None:
            if _REQUIRED.get(stage) == prev:
                raise FileNotFoundError(
                    f"stage {stage!r} starts from the {prev} stage, but {ckpt_dir} has no "
                    f"checkpoint: run --stage {prev} first (or --stage all)"
                )
            logging.warning(
                "stage %s: no checkpoint of stage %s in %s; %s start from scratch%s",
                stage, prev, ckpt_dir, ", ".join(names),
                " (the pose loss then uses an untrained detector)" if prev == "pose_detector" else "",
            )  # fmt: skip
            continue
        names = [n for n in names if n in nets.models()]
        restore_networks(nets, path, names)
        logging.info("stage %s: %s initialised from %s", stage, ", ".join(names), path)


def image_grid(batch, out: dict, num: int = 4) -> tf.Tensor:
    """[1, h, 6*w, 3] uint8 grid rows: source | target skeleton | predicted
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


class _SignalFlag:
    def __init__(self):
        self.received = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _to_float(values) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()}


def train_stage(config, workdir: str, stage: str, strategy=None, nets: Networks | ParserNetworks | None = None,
                max_steps: int | None = None) -> dict:  # fmt: skip
    """Trains one stage to `train.<stage>_steps` (resuming if checkpointed).

    `nets`: the networks, built inside `strategy`'s scope (default: built here);
    a :class:`ParserNetworks` for the parser stage, a :class:`Networks` for the others.

    Returns a summary dict: stage, start_step, final_step, last losses, seconds,
    examples_per_second, status ("done" | "interrupted"); the parser stage adds
    `validation` (:func:`spt_tf.evaluation.human_parser.evaluate` on the test split).

    Raises:
      NonFiniteLossError: a loss is NaN/Inf (names step and loss); nothing is saved.
    """
    strategy = strategy or strategy_lib.build_strategy(config)
    precision = strategy_lib.set_precision(config)
    xla = strategy_lib.use_xla(config)
    chief = strategy_lib.is_chief(strategy)
    global_batch = int(config.train.batch_size)
    total = _steps(config, stage) if max_steps is None else int(max_steps)

    if stage not in ("pose_detector", "semantic", PARSER_STAGE):
        check_pose_detector(config, workdir)
    want = ParserNetworks if stage == PARSER_STAGE else Networks
    if nets is not None and not isinstance(nets, want):
        raise TypeError(f"stage {stage} trains a {want.__name__}, got nets of type {type(nets).__name__}")
    with strategy.scope():
        nets = nets or want(config)
        model = _stage_model(stage, nets, config, global_batch, xla)
        # H_S has an optimizer of its own where it trains with H_A (joint, progressive).
        h_opt = _optimizer(config, precision, "joint_semantic") if _trains_hs_with_ha(stage) else None
        model.compile(g_optimizer=_optimizer(config, precision, stage),
                      d_optimizer=_optimizer(config, precision, stage), h_optimizer=h_opt)  # fmt: skip
        model.build_optimizers()
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt_dir = os.path.join(workdir, stage)
    if not chief:  # non-chief workers write to a throwaway directory
        ckpt_dir = os.path.join(workdir, "tmp", f"{stage}_worker_{strategy.cluster_resolver.task_id}")
    extra = {"h_optimizer": model.h_optimizer} if model.h_optimizer is not None else {}
    ckpt = tf.train.Checkpoint(step=step, g_optimizer=model.g_optimizer, d_optimizer=model.d_optimizer,
                               **extra, **nets.trackables())  # fmt: skip
    manager = tf.train.CheckpointManager(ckpt, ckpt_dir, max_to_keep=int(config.train.keep_checkpoints))
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("stage %s: resumed from %s at step %d", stage, manager.latest_checkpoint, int(step.numpy()))
    else:
        _init_from_previous(stage, nets, workdir)
    start = int(step.numpy())
    if start >= total:
        logging.info("stage %s: already at step %d of %d", stage, start, total)
        return {"stage": stage, "start_step": start, "final_step": start, "status": "done", "losses": {}}

    dist_ds = strategy.distribute_datasets_from_function(_dataset_fn(stage, config))
    iterator = iter(dist_ds)

    @tf.function
    def dist_step(it):
        batch = next(it)
        per_replica = strategy.run(model.train_step, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", stage)) if chief else None
    log_every, image_every = int(config.train.log_every), int(config.train.image_every)
    ckpt_every = int(config.train.checkpoint_every)
    values: dict[str, float] = {}
    t0 = time.time()
    t_log, n_log = time.time(), 0
    status = "done"
    with _SignalFlag() as flag, tqdm(total=total, initial=start, desc=stage, disable=not chief,
                                      dynamic_ncols=True, mininterval=2.0) as bar:  # fmt: skip
        progressive = bool(config.model.progressive) and stage not in ("pose_detector", "semantic", PARSER_STAGE)
        while int(step.numpy()) < total:
            if progressive:
                nets.ha.set_alpha(_alpha(config, stage, int(step.numpy())))
            values = _to_float(dist_step(iterator))
            bad = [k for k, v in values.items() if not math.isfinite(v)]
            if bad:
                raise NonFiniteLossError(
                    f"stage {stage}: loss {bad[0]} is {values[bad[0]]} at step {int(step.numpy()) + 1}; "
                    f"training stopped, the last good checkpoint ({manager.latest_checkpoint}) is kept"
                )
            step.assign_add(1)
            s = int(step.numpy())
            n_log += 1
            bar.update(1)
            main = {k: v for k, v in values.items()
                    if k.endswith("total") or k in ("pose_detector", "ds_loss", "da_loss", "parser_ce")}  # fmt: skip
            bar.set_postfix({k: f"{v:.3g}" for k, v in main.items()}, refresh=False)
            if writer is not None and (s % log_every == 0 or s == total):
                dt = time.time() - t_log
                with writer.as_default(step=s):
                    for k, v in values.items():
                        tf.summary.scalar(f"loss/{k}", v)
                    tf.summary.scalar("train/learning_rate", float(np.asarray(model.g_optimizer.learning_rate.numpy())))
                    tf.summary.scalar("train/examples_per_second", n_log * global_batch / max(dt, 1e-9))
                t_log, n_log = time.time(), 0
            if writer is not None and stage not in ("pose_detector", "semantic") and (
                s % image_every == 0 or s == total
            ):
                _write_images(model, config, writer, s, stage)
            if s % ckpt_every == 0 or s == total or flag.received:
                _save(manager, nets, stage, s)
            if flag.received:
                logging.warning("stage %s: %s at step %d; checkpoint written, exiting", stage, flag.received, s)
                status = "interrupted"
                break
    seconds = time.time() - t0
    done = int(step.numpy()) - start
    validation = None
    if writer is not None:
        validation = _write_validation(model, stage, config, writer, int(step.numpy()))
        writer.flush()
    summary = {
        "stage": stage, "start_step": start, "final_step": int(step.numpy()), "status": status, "losses": values,
        "seconds": seconds, "examples_per_second": done * global_batch / max(seconds, 1e-9),
    }  # fmt: skip
    if validation is not None:
        summary["validation"] = validation
    if chief:
        with open(os.path.join(workdir, f"{stage}_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    if status == "interrupted":
        raise Interrupted(f"stage {stage} interrupted by {flag.received} at step {int(step.numpy())}")
    return summary


class UselessPoseDetectorError(ValueError):
    """The pose loss is on, but P does not find the joints of real images."""


def check_pose_detector(config, workdir: str) -> float | None:
    """Refuses the pose loss (Eq. 6) with a pose detector that cannot find real joints.

    The pose loss only means something when P finds the joints of real images:
    an untrained P turns it into noise. Reads the PCKh on the test split that the
    pose-detector stage wrote (``WORKDIR/pose_detector_summary.json``) and
    requires at least ``train.min_pose_pckh``. Nothing is checked when
    ``loss.lambda_pose`` is 0 or ``train.min_pose_pckh`` is 0.

    Returns:
      P's PCKh, or None when not checked.

    Raises:
      UselessPoseDetectorError: no measured PCKh, or one below the bound; the
        message names the file, the fields and what to do.
    """
    bound = float(config.train.min_pose_pckh)
    if float(config.loss.lambda_pose) == 0.0 or bound <= 0.0:
        return None
    path = os.path.join(workdir, "pose_detector_summary.json")
    fix = (f"train P longer (train.pose_detector_steps, then --stage=pose_detector), or switch the pose "
           f"loss off (loss.lambda_pose=0), or lower train.min_pose_pckh (now {bound:g})")  # fmt: skip
    try:
        with open(path) as f:
            validation = json.load(f).get("validation") or {}
    except FileNotFoundError:
        raise UselessPoseDetectorError(
            f"loss.lambda_pose={config.loss.lambda_pose:g} needs a pose detector measured on real images, "
            f"but {path} does not exist (run --stage=pose_detector first); or {fix}"
        ) from None
    pckh = validation.get("pckh")
    if pckh is None or pckh < bound:
        got = "not measured (no test split?)" if pckh is None else f"{pckh:.3f}"
        raise UselessPoseDetectorError(
            f"loss.lambda_pose={config.loss.lambda_pose:g}, but the pose detector's PCKh on real test images "
            f"is {got} ({path}), below train.min_pose_pckh={bound:g}: its pose loss would be noise; {fix}"
        )
    return float(pckh)


def _save(manager, nets, stage, step):
    """Saves a checkpoint, refusing weights that are not finite."""
    if not has_finite_weights(nets):
        raise NonFiniteLossError(
            f"stage {stage}: non-finite weights at step {step}; not saved, the last good "
            f"checkpoint ({manager.latest_checkpoint}) is kept"
        )
    manager.save(checkpoint_number=step)


def _test_batch(config, n):
    try:
        return next(iter(pipeline.test_dataset(config, batch_size=n, max_pairs=n)))
    except (FileNotFoundError, OSError, ValueError) as e:
        logging.warning("no test pairs for image summaries / validation: %s", e)
        return None


def parser_grid(images, truth, logits, num: int = 4) -> tf.Tensor:
    """[1, num*h, 3*w, 3] uint8 grid rows: image | true parsing | predicted parsing (colours)."""
    palette = tf.constant(labels.PALETTE, tf.uint8)
    img = tf.cast(tf.clip_by_value((images[:num] + 1.0) * 127.5, 0, 255), tf.uint8)
    cols = [img, tf.gather(palette, tf.cast(truth[:num], tf.int32)), tf.gather(palette, tf.argmax(logits[:num], -1))]
    grid = tf.concat(cols, 2)
    return tf.concat(tf.unstack(grid), 0)[None]


def _parser_test_batch(config, n):
    try:
        return next(iter(pipeline.parsing_dataset(config, "test", batch_size=n, training=False)))
    except (FileNotFoundError, OSError, ValueError) as e:
        logging.warning("no test images for parser image summaries: %s", e)
        return None


def _write_images(model, config, writer, step, stage=None):
    if stage == PARSER_STAGE:
        batch = _parser_test_batch(config, 4)
        if batch is None:
            return
        grid = parser_grid(batch["image"], batch["parsing"], model.parser(batch["image"], training=False))
        with writer.as_default(step=step):
            tf.summary.image("samples", grid, max_outputs=1)
        return
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
        logging.warning("stage %s, step %d: %s", stage, step, problem)


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


def _validate_parser(model, config, writer, step):
    """The parser's mIoU / pixel accuracy on the whole test split; None without one."""
    return _validate_on_test_split(
        "parser", lambda: parser_eval.evaluate(config, model.parser, "test"), writer, step,
        lambda r: {"parser_miou": r["miou"], "parser_pixel_accuracy": r["pixel_accuracy"],
                   "all_background_pixel_accuracy": r["all_background"]["pixel_accuracy"]},
        lambda r: (f"mIoU {r['miou']:.4f}, pixel accuracy {r['pixel_accuracy']:.4f} "
                   f"(all background: {r['all_background']['pixel_accuracy']:.4f})"),
    )  # fmt: skip


def _validate_pose_detector(model, config, writer, step):
    """P's PCKh on the real images of the test split; None without one."""
    return _validate_on_test_split(
        "pose detector", lambda: pose_eval.evaluate(config, model.pose_detector, "test"), writer, step,
        lambda r: {"pose_detector_pckh": r["pckh"]}, lambda r: f"PCKh {r['pckh']:.4f}",
    )  # fmt: skip


def _write_validation(model, stage, config, writer, step):
    """End-of-stage validation: on a few test pairs (L1 and parsing accuracy), or the
    parser's on the whole test split (returned)."""
    if stage == "pose_detector":
        return _validate_pose_detector(model, config, writer, step)
    if stage == PARSER_STAGE:
        return _validate_parser(model, config, writer, step)
    batch = _test_batch(config, int(config.eval.batch_size))
    if batch is None:
        return None
    with writer.as_default(step=step):
        if stage == "semantic":
            src = geometry.one_hot_parsing(batch["parsing"], int(config.model.num_labels))
            pred = model.hs(stages_lib.hs_inputs(src, batch["source_pose"], batch["source_mask"],
                                                 batch["target_pose"], batch["target_mask"]))  # fmt: skip
            acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(pred, -1), tf.cast(batch["target_parsing"], tf.int64)),
                                         tf.float32))  # fmt: skip
            tf.summary.scalar("validation/parsing_pixel_accuracy", acc)
        else:
            out = model.generate(batch, training=False)
            l1 = tf.reduce_mean(tf.abs(out["fake_target"] - batch["target_image"])) / 2.0
            tf.summary.scalar("validation/l1", l1)
    return None


def run(config, workdir: str, stage: str = "all") -> list[dict]:
    """Runs `stage` (or Algorithm 1 in order for "all"); returns stage summaries."""
    write_config(config, workdir)
    keras.utils.set_random_seed(int(config.train.seed))
    strategy = strategy_lib.build_strategy(config)
    strategy_lib.set_precision(config)
    stages = stages_for(config, stage)
    with strategy.scope():
        nets = Networks(config) if any(s != PARSER_STAGE for s in stages) else ParserNetworks(config)
    summaries = []
    for s in stages:
        summaries.append(train_stage(config, workdir, s, strategy=strategy, nets=nets))
    return summaries


def has_finite_weights(nets: _NetworkSet) -> bool:
    return all(np.isfinite(v.numpy()).all() for m in nets.models().values() for v in m.weights)
