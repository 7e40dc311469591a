"""tf.data input pipelines: unpaired training, pseudo pairs for H_S, test pairs
(and images with their heatmaps for P, with their parsing for the human parser).

The file index is read and validated in Python once (names, keypoints, paths:
every missing file or bad row is an error naming it); decoding, resizing and
all geometry run in the tf.data graph, the geometry on whole batches through
:func:`spt_tf.geometry.pair_conditioning` (the same code the SavedModel runs).

Examples are dicts (batched):
  image          float32 [B, H, W, 3] in [-1, 1]
  parsing        uint8   [B, H, W] labels 0..L-1
  keypoints      float32 [B, 18, 2] (y, x), -1 missing (at H x W)
  target_keypoints float32 [B, 18, 2]
  target_parsing uint8   [B, H, W]      (pseudo pairs and test pairs)
  target_image   float32 [B, H, W, 3]   (test pairs: ground truth)
  name, target_name  string [B]
  + source_pose, source_mask, target_pose, target_mask, transforms, part_masks
    (see geometry.pair_conditioning).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import tensorflow as tf
from absl import logging

from spt_tf import geometry, labels
from spt_tf.data import formats


@dataclasses.dataclass
class Index:
    """A validated file index of one split."""

    names: list[str]
    image_paths: list[str]
    parsing_paths: list[str]
    keypoints: np.ndarray  # [N, 18, 2] float32 at the stored image size
    annotations: str = ""  # the annotation CSV, named by the loader's keypoint check
    rows: list[int] | None = None  # each entry's row in it (header = 1)

    def __len__(self) -> int:
        return len(self.names)

    def position(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}


def _root(config) -> str:
    return config.data.root


def _path(config, field: str) -> str:
    return formats.resolve(_root(config), getattr(config.data, field))


def load_index(config, split: str) -> Index:
    """Reads the annotation CSV of `split` ("train" or "test") and locates files.

    Raises:
      formats.FormatError: a missing image or parsing file, naming it and the
        annotation row's name.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    ann_path = _path(config, f"annotations_{split}")
    skipped: list = []
    rows: dict[str, int] = {}
    # The keypoints' frame is each image's size on disk (the loader scales them from the
    # decoded size to data.height x data.width, and the stored images may be larger or
    # smaller than that), which is not known before the image is decoded. So the reader
    # checks the lower bound (-tolerance) here, and the loader checks the right and bottom
    # edges against the decoded size (_check_keypoints), naming this file and the row.
    kps = formats.read_annotations(
        ann_path, tolerance=config.data.keypoint_tolerance, skip_invalid=bool(config.data.skip_invalid),
        report=skipped, rows=rows,
    )  # fmt: skip
    if skipped:
        logging.warning("%s: skipped %d invalid rows (data.skip_invalid): %s", ann_path, len(skipped),
                        "; ".join(str(e) for e in skipped[:5]))  # fmt: skip
    image_dir = _path(config, f"{split}_images")
    parsing_dir = _path(config, "parsing_dir")
    names, images, parsings, points = [], [], [], []
    for name, kp in kps.items():
        img = os.path.join(image_dir, name)
        if not os.path.isfile(img):
            raise formats.FormatError(ann_path, f"image file {img} does not exist", field=f"name {name!r}")
        names.append(name)
        images.append(img)
        parsings.append(formats.find_parsing(parsing_dir, name))
        points.append(kp)
    if not names:
        raise formats.FormatError(ann_path, "no annotation rows")
    return Index(names, images, parsings, np.stack(points).astype(np.float32), ann_path, [rows[n] for n in names])


def _decode_image(path, height, width):
    raw = tf.io.read_file(path)
    img = tf.io.decode_image(raw, channels=3, expand_animations=False)
    size = tf.shape(img)[:2]
    img = tf.image.resize(tf.cast(img, tf.float32), [height, width], method="bilinear")
    img = tf.reshape(img, [height, width, 3])
    return img / 127.5 - 1.0, size


def _read_label_file(path, num_labels: int = labels.NUM_LABELS):
    """[H, W, 1] uint8 labels: PNG via TF; .npy via numpy (documented: slower, a numpy_function).

    A .npy map is read by ``formats.read_parsing``: integer dtype, [H, W] and labels in
    ``0..num_labels - 1`` are checked before the cast to uint8 (which would wrap 300 or -1
    into a valid-looking label); a bad map raises a FormatError naming the file, which
    tf.data reports as an InvalidArgumentError with that message. PNG labels are checked by
    :func:`_decode_parsing`. Works in tf.data, tf.function and eagerly.
    """

    def npy(p):
        # bytes in a graph, a 0-d object array when called eagerly
        p = os.fsdecode(np.asarray(p).item())
        return formats.read_parsing(p, num_labels)[..., None]

    return tf.cond(
        tf.strings.regex_full_match(path, r".*\.npy"),
        lambda: tf.numpy_function(npy, [path], tf.uint8, stateful=False),
        lambda: tf.io.decode_png(tf.io.read_file(path), channels=1),
    )


def lip_to_spt_tf(lip, keypoints, table):
    """TF version of labels.lip_to_spt for [H, W] maps (keypoints at the map's size)."""
    mapped = tf.gather(table, tf.cast(lip, tf.int32))
    h, w = tf.shape(lip)[0], tf.shape(lip)[1]
    yy, xx = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")

    def nearer(r, l_, right, left):
        d = []
        for k in (r, l_):
            kp = keypoints[k]
            ok = tf.reduce_all(tf.not_equal(kp, geometry.MISSING))
            d.append(tf.where(ok, (yy - kp[0]) ** 2 + (xx - kp[1]) ** 2, np.inf))
        return tf.where(d[0] <= d[1], right, left)

    mapped = tf.where(
        tf.equal(mapped, labels.ARM_BY_NEARER_WRIST),
        tf.cast(nearer(4, 7, labels.RIGHT_ARM, labels.LEFT_ARM), mapped.dtype),
        mapped,
    )
    mapped = tf.where(
        tf.equal(mapped, labels.LEG_BY_NEARER_ANKLE),
        tf.cast(nearer(10, 13, labels.RIGHT_LEG, labels.LEFT_LEG), mapped.dtype),
        mapped,
    )
    return tf.cast(mapped, tf.uint8)


def _decode_parsing(path, height, width, num_labels, image_size):
    lab = tf.ensure_shape(_read_label_file(path, num_labels), [None, None, 1])
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.shape(lab)[:2], image_size)),
            ["parsing map shape differs from its image:", path, tf.shape(lab)[:2], image_size],
        ),
        tf.debugging.Assert(
            tf.reduce_max(tf.cast(lab, tf.int32)) < num_labels,
            ["parsing label out of range in", path, tf.reduce_max(lab)],
        ),
    ]
    with tf.control_dependencies(checks):
        lab = tf.image.resize(lab, [height, width], method="nearest")
    return tf.reshape(tf.cast(lab, tf.uint8), [height, width])


def _check_keypoints(kp, size, tolerance: float, annotations: str, row, image_path):
    """Asserts that the present keypoints lie within the decoded image by ``tolerance``.

    Args:
      kp: [18, 2] (y, x) at the stored image's size (``Index.keypoints``), -1 missing.
      size: [2] int32 (H, W) of the decoded image.
      tolerance: ``data.keypoint_tolerance``.
      annotations, row, image_path: named in the message.

    Returns:
      ``kp``, after the check (an InvalidArgumentError naming the annotation file, the
      row, the field, the keypoint and the image when a point lies farther out).
    """
    tol = float(tolerance)
    present = tf.reduce_all(tf.not_equal(kp, geometry.MISSING), -1, keepdims=True)  # [18, 1]
    limit = tf.cast(size, tf.float32) - 1.0 + tol  # [2] (y, x)
    bad = present & ((kp < -tol) | (kp > limit))  # [18, 2]
    ok = tf.logical_not(tf.reduce_any(bad))

    def message():
        first = tf.argmax(tf.cast(tf.reshape(bad, [-1]), tf.int32), output_type=tf.int32)
        j, c = first // 2, first % 2
        # No quotes around the field: the assertion's message escapes them.
        fields = tf.constant(["keypoints_y", "keypoints_x"])
        num = lambda x: tf.strings.as_string(x, shortest=True)  # noqa: E731
        return tf.strings.join([
            annotations, ", row ", tf.strings.as_string(row), ", field ", tf.gather(fields, c),
            ": keypoint ", tf.strings.as_string(j), " coordinate ", num(tf.reshape(kp, [-1])[first]),
            " is outside the image [0, ", tf.strings.as_string(size[c] - 1), "] of ", image_path,
            " (", tf.strings.as_string(size[0]), "x", tf.strings.as_string(size[1]),
            " on disk) by more than the tolerance ", num(tf.constant(tol)),
            " (data.keypoint_tolerance)",
        ])  # fmt: skip

    msg = tf.cond(ok, lambda: tf.constant(""), message)
    with tf.control_dependencies([tf.debugging.Assert(ok, [msg])]):
        return tf.identity(kp)


def _scale_keypoints(kp, size, height, width):
    """Keypoints of an image of `size` -> the network resolution; -1 stays -1."""
    scale = tf.stack([height / tf.cast(size[0], tf.float32), width / tf.cast(size[1], tf.float32)])
    return tf.where(tf.equal(kp, geometry.MISSING), kp, kp * scale)


class _Loader:
    """Decodes one example of an index by position, at the config resolution."""

    def __init__(self, config, index: Index):
        self.h = int(config.data.height)
        self.w = int(config.data.width)
        self.num_labels = int(config.model.num_labels)
        self.lip = bool(config.data.parsing_is_lip)
        self.lip_table = tf.constant(labels._table(None))
        self.names = tf.constant(index.names)
        self.images = tf.constant(index.image_paths)
        self.parsings = tf.constant(index.parsing_paths)
        self.keypoints = tf.constant(index.keypoints)
        self.tolerance = float(config.data.keypoint_tolerance)
        self.annotations = index.annotations or "the annotations"
        rows = index.rows if index.rows is not None else [0] * len(index)
        self.rows = tf.constant(rows, tf.int32)

    def __call__(self, i, with_image=True):
        img, size = _decode_image(self.images[i], self.h, self.w)
        kp = _check_keypoints(self.keypoints[i], size, self.tolerance, self.annotations, self.rows[i], self.images[i])
        kp = _scale_keypoints(kp, size, self.h, self.w)
        if self.lip:
            lab = _decode_parsing(self.parsings[i], self.h, self.w, labels.NUM_LIP_LABELS, size)
            lab = lip_to_spt_tf(lab, kp, self.lip_table)
        else:
            lab = _decode_parsing(self.parsings[i], self.h, self.w, self.num_labels, size)
        out = {"name": self.names[i], "parsing": lab, "keypoints": kp}
        if with_image:
            out["image"] = img
        return out


def mirror_person(image, parsing, keypoints):
    """A batch of people mirrored left-right: ``[B, H, W, C]`` image, ``[B, H, W, L]`` one-hot
    (or soft) parsing with its left and right labels swapped (``labels.MIRROR_LABELS``), and
    ``[B, 18, 2]`` joints (``geometry.mirror_keypoints``).
    """
    image, parsing = tf.convert_to_tensor(image), tf.convert_to_tensor(parsing)
    if parsing.shape[-1] != len(labels.MIRROR_LABELS):
        raise ValueError(f"mirror_person: parsing has {parsing.shape[-1]} labels, the SPT labels are "
                         f"{len(labels.MIRROR_LABELS)} (spt_tf.labels.SPT_LABELS)")  # fmt: skip
    width = tf.shape(image)[2]
    swapped = tf.gather(parsing, list(labels.MIRROR_LABELS), axis=-1)
    return image[:, :, ::-1], swapped[:, :, ::-1], geometry.mirror_keypoints(keypoints, width)


def _flip(ex):
    """Horizontal flip of an example: image, parsing (sides swapped), keypoints."""
    w = tf.cast(tf.shape(ex["image"])[1], tf.float32)
    out = dict(ex)
    out["image"] = ex["image"][:, ::-1]
    swap = tf.constant(labels.MIRROR_LABELS, tf.uint8)
    out["parsing"] = tf.gather(swap, tf.cast(ex["parsing"][:, ::-1], tf.int32))
    out["keypoints"] = geometry.mirror_keypoints(ex["keypoints"], w)
    return out


def _options(config) -> tf.data.Options:
    opts = tf.data.Options()
    opts.deterministic = bool(config.data.deterministic)
    opts.autotune.enabled = True
    return opts


def _per_replica_batch(config, input_context) -> int:
    batch = int(config.train.batch_size)
    if input_context is None:
        return batch
    return input_context.get_per_replica_batch_size(batch)


@functools.lru_cache(maxsize=None)
def _conditioning_fn(h, w, sigma, radius, xla):
    """One (compiled once per process) geometry function per resolution.

    XLA fuses the geometry about 10x faster than graph mode on CPU
    (bench/bench_geometry.py), inside the tf.data map.
    """

    def cond(src, tgt):
        return geometry.pair_conditioning(src, tgt, h, w, sigma, radius)

    return tf.function(cond, jit_compile=xla)


def add_conditioning(config):
    """A batched-map function adding geometry.pair_conditioning's tensors."""
    h, w = int(config.data.height), int(config.data.width)
    sigma, radius = float(config.data.sigma), float(config.data.mask_radius)

    cond = _conditioning_fn(h, w, sigma, radius, bool(config.data.xla_geometry))

    def fn(batch):
        out = dict(batch)
        out.update(cond(batch["keypoints"], batch["target_keypoints"]))
        return out

    return fn


def train_dataset(
    config,
    input_context: tf.distribute.InputContext | None = None,
    pseudo_pairs: bool = False,
    gt_pairs: bool = False,
    seed: int | None = None,
    index: Index | None = None,
) -> tf.data.Dataset:
    """Infinite, shuffled, batched training examples.

    Args:
      config: the run config (data.*, train.batch_size).
      input_context: from `strategy.distribute_datasets_from_function`; shards
        the files and gives the per-replica batch.
      pseudo_pairs: read `data.pseudo_pairs` (from,to[,cost]) and add the pseudo
        target parsing and keypoints (H_S training). Without the file: an error
        telling how to make it.
      gt_pairs: targets from `data.pairs_train` with their real parsing (TS-GT
        ablation) instead of a random other pose.
      seed: shuffling / target sampling seed (default config.train.seed).
      index: a preloaded training index (default: load it).

    Returns:
      A dataset of batched example dicts (see module docstring).
    """
    seed = int(config.train.seed if seed is None else seed)
    index = index or load_index(config, "train")
    loader = _Loader(config, index)
    n = len(index)
    batch = _per_replica_batch(config, input_context)
    if pseudo_pairs or gt_pairs:
        field = "pseudo_pairs" if pseudo_pairs else "pairs_train"
        path = _path(config, field)
        if not os.path.isfile(path):
            hint = (
                "run `python -m spt_tf.data.pseudo_pairs --config ...` first"
                if pseudo_pairs
                else "the dataset ships no training pairs file"
            )
            raise FileNotFoundError(f"data.{field}: {path} does not exist; {hint}")
        pos = index.position()
        pairs = formats.read_pairs(path, known_names=pos)
        src = np.array([pos[a] for a, _ in pairs], np.int64)
        dst = np.array([pos[b] for _, b in pairs], np.int64)
        ds = tf.data.Dataset.from_tensor_slices((src, dst))
        count = len(pairs)
    else:
        if n < 2:
            raise ValueError("unpaired training needs at least 2 training images")
        idx = tf.data.Dataset.range(n)
        rnd = tf.data.Dataset.random(seed=seed)
        ds = tf.data.Dataset.zip(idx.repeat(), rnd).map(lambda i, r: (i, (i + 1 + r % (n - 1)) % n))
        ds = ds.take(n)
        count = n
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.shuffle(min(count, int(config.data.shuffle_buffer)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
    with_target_parsing = pseudo_pairs or gt_pairs

    def load(i, j):
        ex = loader(i)
        tgt = loader(j, with_image=False)
        if config.data.flip:
            ex = tf.cond(tf.random.uniform([]) < 0.5, lambda: _flip(ex), lambda: ex)
        ex["target_keypoints"] = tgt["keypoints"]
        ex["target_name"] = tgt["name"]
        if with_target_parsing:
            ex["target_parsing"] = tgt["parsing"]
        return ex

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.data.deterministic)
    if config.data.cache:
        raise ValueError("data.cache is only valid for the finite test pipeline")
    ds = ds.batch(batch, drop_remainder=True)
    ds = ds.map(add_conditioning(config), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(config))


def test_dataset(
    config,
    batch_size: int | None = None,
    max_pairs: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    buffer_batches: int = 0,
) -> tf.data.Dataset:
    """Finite test pairs with the real target (image, parsing, keypoints).

    ``buffer_batches`` > 0 bounds what the pipeline holds ahead of the consumer:
    that many pairs loading, that many batches being conditioned and that many
    prefetched (the evaluator's memory bound: a conditioned 256x256 batch of 16
    is ~0.25 GB, and AUTOTUNE may buffer several); 0 leaves it to AUTOTUNE.
    """
    index = load_index(config, "test")
    loader = _Loader(config, index)
    pos = index.position()
    pairs = formats.read_pairs(_path(config, "pairs_test"), known_names=pos)
    if max_pairs:
        pairs = pairs[:max_pairs]
    src = np.array([pos[a] for a, _ in pairs], np.int64)
    dst = np.array([pos[b] for _, b in pairs], np.int64)
    ds = tf.data.Dataset.from_tensor_slices((src, dst))
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    def load(i, j):
        ex = loader(i)
        tgt = loader(j)
        ex["target_image"] = tgt["image"]
        ex["target_parsing"] = tgt["parsing"]
        ex["target_keypoints"] = tgt["keypoints"]
        ex["target_name"] = tgt["name"]
        return ex

    batch = int(batch_size or config.eval.batch_size)
    bound = int(buffer_batches)
    if bound < 0:
        raise ValueError(f"test_dataset: buffer_batches must be >= 0, got {bound}")
    ds = ds.map(load, num_parallel_calls=bound * batch or tf.data.AUTOTUNE, deterministic=True)
    if config.data.cache:
        ds = ds.cache()
    ds = ds.batch(batch)
    ds = ds.map(add_conditioning(config), num_parallel_calls=bound or tf.data.AUTOTUNE)
    return ds.prefetch(bound or tf.data.AUTOTUNE).with_options(_options(config))


def pose_dataset(config, input_context=None, seed: int | None = None) -> tf.data.Dataset:
    """Images and their heatmaps for training the pose detector P."""
    seed = int(config.train.seed if seed is None else seed)
    index = load_index(config, "train")
    loader = _Loader(config, index)
    h, w = int(config.data.height), int(config.data.width)
    ds = tf.data.Dataset.range(len(index))
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.shuffle(min(len(index), int(config.data.shuffle_buffer)), seed=seed).repeat()
    ds = ds.map(loader, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.data.deterministic)
    ds = ds.batch(_per_replica_batch(config, input_context), drop_remainder=True)

    def heat(batch):
        out = dict(batch)
        out["heatmaps"] = geometry.pose_heatmaps(batch["keypoints"], h, w, float(config.data.sigma))
        return out

    ds = ds.map(heat, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(config))


def split_batches(config, split: str, batch_size: int | None = None, max_images: int = 0):
    """The images of ``split`` in order (``parsing_dataset``, no augmentation), cut after
    ``max_images`` (0 = all): the batches the evaluations of P and the parser read."""
    count = 0
    for batch in parsing_dataset(config, split, batch_size=batch_size, training=False):
        if max_images:
            keep = max_images - count
            if keep <= 0:
                return
            batch = {k: v[:keep] for k, v in batch.items()}
        count += int(batch["image"].shape[0])
        yield batch


def parsing_dataset(config, split: str = "train", input_context=None, seed: int | None = None,
                    batch_size: int | None = None, training: bool | None = None) -> tf.data.Dataset:  # fmt: skip
    """Images and their parsing maps, for the human parser (``--stage=parser``).

    Args:
      config: the run config (data.*, train.batch_size, eval.batch_size).
      split: "train" or "test".
      input_context: from ``strategy.distribute_datasets_from_function``.
      seed: shuffling seed (default config.train.seed).
      batch_size: the evaluation batch size (default ``eval.batch_size``).
      training: True: infinite, shuffled, batches of the per-replica
        ``train.batch_size`` (remainder dropped), random horizontal flips with
        ``data.flip`` (left/right labels swapped); False: one finite pass in
        file order, batches of ``batch_size``. Default: True for "train".

    Returns:
      Batched dicts: ``image`` float32 [B, H, W, 3] in [-1, 1], ``parsing``
      uint8 [B, H, W], ``keypoints``, ``name``.
    """
    index = load_index(config, split)
    loader = _Loader(config, index)
    ds = tf.data.Dataset.range(len(index))
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    if not (split == "train" if training is None else training):
        ds = ds.map(loader, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.batch(int(batch_size or config.eval.batch_size))
        return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(config))
    seed = int(config.train.seed if seed is None else seed)
    ds = ds.shuffle(min(len(index), int(config.data.shuffle_buffer)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()

    def load(i):
        ex = loader(i)
        if config.data.flip:
            ex = tf.cond(tf.random.uniform([]) < 0.5, lambda: _flip(ex), lambda: ex)
        return ex

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.data.deterministic)
    ds = ds.batch(_per_replica_batch(config, input_context), drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(config))
