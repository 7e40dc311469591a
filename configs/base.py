"""Base config: every field of a run, with the paper's defaults (Sec. 4.1).

Per-dataset files (`synthetic.py`, `market.py`, `deepfashion.py`,
`testing.py`) start from `get_config()` here and change what differs.
`configs/spt.py:NAME[,ABLATION]` selects one by argument.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()

    # ---------------------------------------------------------------- data
    c.data = d = ml_collections.ConfigDict()
    # Dataset name (free text, used in logs and cached statistics).
    d.name = "synthetic"
    # Root folder; relative paths below are resolved against it.
    d.root = "data/synthetic"
    # Folder of training images (relative to root).
    d.train_images = "train"
    # Folder of test images (relative to root).
    d.test_images = "test"
    # Folder of parsing maps `<stem>.png` or `<stem>.npy` (10 SPT labels).
    d.parsing_dir = "parsing"
    # Annotation CSVs `name:keypoints_y:keypoints_x`.
    d.annotations_train = "annotation-train.csv"
    d.annotations_test = "annotation-test.csv"
    # Pairs CSVs `from,to` (test: evaluation; train: only the TS-GT ablation).
    d.pairs_test = "pairs-test.csv"
    d.pairs_train = "pairs-train.csv"
    # Pseudo pairs for H_S (written by `python -m spt_tf.data.pseudo_pairs`).
    d.pseudo_pairs = "pseudo-pairs.csv"
    # identities.csv (synthetic data only; empty string when absent).
    d.identities = "identities.csv"
    # Image size fed to the networks.
    d.height = 128
    d.width = 64
    # Parsing maps stored as LIP-20 labels (converted on load) instead of SPT-10.
    d.parsing_is_lip = False
    # Pose heatmap sigma in image pixels (6 at every resolution, as in the releases).
    d.sigma = 6.0
    # PG2 pose mask disc radius / limb half width.
    d.mask_radius = 4.0
    # Keypoints may lie this many pixels outside the image before a row is invalid.
    d.keypoint_tolerance = 2.0
    # Skip invalid rows (counted and reported) instead of failing.
    d.skip_invalid = False
    # Random horizontal flips of training examples.
    d.flip = False
    # Cache decoded examples in memory.
    d.cache = False
    # Shuffle buffer (examples).
    d.shuffle_buffer = 512
    # XLA-compile the geometry in the input pipeline (~10x faster; compiles once per process).
    d.xla_geometry = True
    # Deterministic order and maps (tests, reproducible runs).
    d.deterministic = False

    # ---------------------------------------------------------------- model
    c.model = m = ml_collections.ConfigDict()
    # Number of semantic labels.
    m.num_labels = 10
    # Base width: the filters 64,128,256,512,... are multiplied by this.
    m.width_multiplier = 1.0
    # Normalization: "instance" (per channel), "instance_single" (releases'
    # one mean/variance over H,W,C), "batch", "none".
    m.norm = "instance"
    # Dropout rate on the first 3 decoder blocks of H_A (0 disables).
    m.dropout = 0.5
    # Number of highest-resolution levels with deformable skips in H_A.
    m.deformable_levels = 4
    # H_A uses parsing channels 1..L-1 only (release: background dropped).
    m.drop_background_channel = True
    # H_A's target encoder also reads the target parsing painted with the source's mean
    # colour per label (spt_tf.models.generators.paint_by_labels): part of the offline
    # recipe (docs/design.md "Offline recipe"); not in the paper (False).
    m.paint_input = False
    # H_A outputs a residual over that painted parsing, tanh(logits + atanh(paint)):
    # it starts at the paint-by-numbers image and learns texture, shading and shape.
    # Offline recipe; not in the paper (False).
    m.paint_residual = False
    # With paint_residual: the residual only where the target parsing has the person; the
    # background stays the source's mean background colour (for data whose photos of one
    # person have unrelated backgrounds). Offline recipe; not in the paper (False).
    m.residual_person_only = False
    # H_A's deformable skips pass a part's warped source features only where the warped
    # source label agrees with the target's (spt_tf.models.generators.label_gated_masks).
    # Offline recipe; not in the paper (False).
    m.skip_label_gate = False
    # Progressive 256 generator: global generator at half resolution + local enhancer.
    m.progressive = False
    # PatchGAN: number of strided layers and base width.
    m.d_layers = 3
    m.d_filters = 64
    # Face crop side for D_face (0 disables the face loss).
    m.face_crop_size = 32
    # Pose detector P: ResNet blocks and base width.
    m.pose_blocks = 6
    m.pose_filters = 32
    # Human parser (the `parser` stage, custom photos without a parsing map): U-Net of
    # the generators' depth whose base filters 64,128,256,512,... are multiplied by this.
    m.parser_width_multiplier = 0.5
    # VGG16 weights for the content/style features: "imagenet", a file, or "" (random).
    m.vgg_weights = "imagenet"

    # ---------------------------------------------------------------- losses
    c.loss = lo = ml_collections.ConfigDict()
    # GAN loss: "lsgan" or "vanilla".
    lo.gan = "lsgan"
    # H_S: weight of the weighted cross entropy (Eq. 4).
    lo.lambda_ce = 1.0
    # H_A: adversarial, pose (Eq. 6), content (Eq. 7), style (Eq. 8), face (Eq. 9).
    lo.lambda_adv = 1.0
    lo.lambda_pose = 700.0
    lo.lambda_cont = 0.03
    lo.lambda_sty = 1.0
    lo.lambda_face = 1.0
    # H_A: pixel L1 between the cycled image and the source, |I~_ps - I_ps|. Not in
    # Eq. 10 (whose content loss compares VGG features of the two); the authors'
    # release adds an L1 on the cycle in its generator step. 0 in the paper's configs;
    # the synthetic demo, which has no ImageNet VGG offline, needs it.
    lo.lambda_cycle = 0.0
    # H_A: pixel L1 of the self-reconstruction, |H_A(I_ps, S_ps, p_s, S_ps, p_s) - I_ps|:
    # a real image in, the same real image out. Not in Eq. 10 (0 in the paper's configs).
    lo.lambda_identity = 0.0
    # Where that L1 counts: "image" or "person" (the source's non-background labels; for
    # data whose photos of one person have unrelated backgrounds).
    lo.identity_region = "image"
    # Share of the self-reconstruction's examples whose source is the image mirrored
    # (sides swapped in the parsing and the joints): H_A then rebuilds the image from
    # the other side's parts through real, non-identity part warps, a supervised
    # example of what pose transfer asks of the deformable skips. 0: the plain
    # self-reconstruction only.
    lo.identity_mirror_fraction = 0.0
    # What the content (Eq. 7) and style (Eq. 8) losses compare: "vgg" (the paper:
    # VGG16 relu2_1 with model.vgg_weights) or "statistics" (fixed colour and
    # multi-scale gradient statistics, spt_tf.losses.region_statistics: the offline
    # recipe when no ImageNet VGG can be had; docs/design.md "Offline recipe").
    lo.features = "vgg"
    # Gradient distances (pixels) of the "statistics" features.
    lo.statistics_dilations = (1, 2, 4)
    # The cycle's losses reach H_A's forward pass through the generated target (the
    # paper). False: the cycle starts from the generated target without its gradient.
    lo.cycle_through_target = True
    # Style loss kind: "semantic" (Eq. 8), "mask" (body-part masks; Baseline),
    # "patch" (patches around joints), "none".
    lo.style = "semantic"
    # Labels whose Gram matrices enter the style loss (release: 8, no bg, no face).
    lo.style_labels = (2, 3, 4, 5, 6, 7, 8, 9)
    # The joint stage also trains H_S on its pseudo-label cross entropy (Eq. 4's L_ce, x
    # lambda_ce) with this weight, on pseudo pairs; 0 (the paper): L_A alone moves H_S.
    lo.joint_semantic_weight = 0.0

    # ---------------------------------------------------------------- training
    c.train = t = ml_collections.ConfigDict()
    # Global batch size (split across replicas).
    t.batch_size = 16
    # Steps per stage of Algorithm 1.
    t.pose_detector_steps = 2000
    t.semantic_steps = 5000
    t.appearance_steps = 10000
    t.joint_steps = 10000
    # Progressive 256 generator only: local enhancer fading in alone, then everything.
    t.progressive_local_steps = 10000
    t.progressive_all_steps = 10000
    # The human parser's stage (`--stage=parser`; not part of Algorithm 1 nor of `all`).
    t.parser_steps = 20000
    # Adam learning rate of the parser stage (beta_1 0.9, beta_2 0.999: no adversarial game).
    t.parser_learning_rate = 1e-3
    # Adam learning rate of the pose detector stage (beta_1 0.9, beta_2 0.999: supervised).
    t.pose_detector_learning_rate = 1e-3
    # The appearance stages refuse a pose loss (loss.lambda_pose > 0) whose detector P
    # has a PCKh on the real test images below this (pose_detector_summary.json;
    # an untrained P makes the pose loss noise). 0 disables the check.
    t.min_pose_pckh = 0.5
    # Steps over which the local enhancer's alpha ramps from 0 to 1.
    t.fade_steps = 5000
    # Adam of the GAN stages (appearance, joint, progressive_*).
    t.learning_rate = 2e-4
    # Adam of the semantic stage (H_S, D_S); the paper uses one rate for all stages.
    t.semantic_learning_rate = 2e-4
    # Adam of H_S where it trains with H_A (joint, progressive_*): an optimizer of its own.
    t.joint_semantic_learning_rate = 2e-4
    # Every stage's rates decay linearly to zero over this last fraction of its steps
    # (spt_tf.training.loop.learning_rate_scale); 0 keeps them constant, as the paper.
    t.lr_decay_fraction = 0.0
    t.beta_1 = 0.5
    t.beta_2 = 0.999
    # XLA-compile the per-replica forward+backward ("auto": on with a GPU).
    t.xla = "auto"
    # Keras mixed precision policy: "float32", "mixed_bfloat16", "mixed_float16".
    t.precision = "float32"
    # Logical CPU replicas when no GPU (tests of MirroredStrategy); 1 = default strategy.
    t.cpu_replicas = 1
    # Checkpoints: every N steps, keep K.
    t.checkpoint_every = 1000
    t.keep_checkpoints = 3
    # Scalars every N steps, image grids every M steps.
    t.log_every = 50
    t.image_every = 500
    # At each image summary the generated images are compared with real ones
    # (spt_tf/training/guard.py): a warning when their share of variance at the finest
    # scale is more than this many times the real images' (noise) ...
    t.guard_max_high_frequency_ratio = 2.0
    # ... or their contrast less than this fraction of the real images' (collapse).
    t.guard_min_contrast_ratio = 0.2
    # Random seed.
    t.seed = 0
    # Ablation: "e2e" (SPT), "ts_pred", "ts_gt", "baseline".
    t.ablation = "e2e"

    # ---------------------------------------------------------------- evaluation
    c.eval = e = ml_collections.ConfigDict()
    # Batch size of the evaluator.
    e.batch_size = 16
    # Evaluate at most this many test pairs (0 = all).
    e.max_pairs = 0
    # Inception v3 weights: "imagenet", a file path, or "" (refused unless allowed).
    e.inception_weights = "imagenet"
    # IS splits.
    e.is_splits = 10
    # LPIPS v0.1 AlexNet-lin weights: a .npz file (docs/lpips.md says how to make it from the
    # official ones), or "" (refused unless allowed random; skip with --skip_lpips).
    e.lpips_weights = ""
    # Batches the evaluator's input pipeline may hold ahead (conditioning, prefetch);
    # bounds its memory (a conditioned 256x256 batch of 16 is ~0.25 GB). 0 = AUTOTUNE.
    e.buffer_batches = 1

    return c
