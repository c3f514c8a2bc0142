"""Config sections shared by every model's config file (``configs/*.py``).

Sections: ``data`` (where clips come from), ``features`` (log-Mel settings; part of the shard
identity), ``input`` (windows fed to the model), ``model``, ``train``, ``ckpt``, ``eval``.
Model config files start from :func:`base_config` and set the model-specific parts.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from mdg import errors
from mdg.data.synthetic.domain_shifts import DEFAULT_SNR_SPREAD_DB


def base_config() -> ml_collections.ConfigDict:
    """Defaults common to all models; the model's config file fills ``model``/``input``/``train``."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.root = ""              # folder holding <machine>/{train,test}/; empty = built-in synthetic dataset
    c.data.machines = ""          # comma-separated machine types; empty = every type under root
    c.data.cache_dir = ""         # synthetic WAVs + TFDS shards; empty = $MDG_CACHE or ~/.cache/mdg
    c.data.on_error = "raise"     # bad clip (name, WAV): "raise" or "skip" (logged)
    c.data.validation_split = 0.1  # fraction of training clips held out (by clip) for the val loss
    c.data.per_section = False    # one model per (machine type, section) instead of per machine type
    c.data.eval_ground_truth = ""  # folder of the evaluator's ground-truth CSVs, for eval sets
    c.data.target = ""            # classifiers: "section", "section_attribute" or "machine_section"
    c.data.synthetic = ml_collections.ConfigDict()
    c.data.synthetic.machines = "fan,gearbox,bearing,slider,valve"
    c.data.synthetic.num_source_train = 990
    c.data.synthetic.num_target_train = 10
    c.data.synthetic.num_test = 50     # per (domain, label): 4 * num_test test clips per section
    c.data.synthetic.duration_s = 10.0
    c.data.synthetic.seed = 0
    c.data.synthetic.fault_severity = 1.0  # scales every anomaly's intensity (mdg/data/synthetic/anomalies.py)
    # Per-clip spread (std, dB) of the machine-to-background ratio (mdg/data/synthetic/domain_shifts.py).
    c.data.synthetic.snr_spread_db = DEFAULT_SNR_SPREAD_DB

    c.features = ml_collections.ConfigDict()
    c.features.sample_rate = 16000
    c.features.n_fft = 1024
    c.features.hop_length = 512
    c.features.n_mels = 128
    c.features.power = 2.0
    c.features.fmin = 0.0
    c.features.fmax = config_dict.placeholder(float)   # None = Nyquist

    c.input = ml_collections.ConfigDict()
    c.input.window = 5            # frames per model input
    c.input.train_hop = 1         # frames between training windows
    c.input.train_jitter = True   # each epoch, windows start 0..train_hop-1 frames off the grid (pipeline.TrainBatches)
    c.input.eval_hop = 1          # frames between scoring windows
    c.input.flatten = True        # (window, mels) -> window * mels, frame-major
    c.input.eval_batch_size = 2048
    c.input.shuffle_clips = 256   # training windows are shuffled within blocks of this many clips

    c.model = ml_collections.ConfigDict()

    c.train = ml_collections.ConfigDict()
    c.train.loss = "mse"          # mdg/objectives.py: mse, softmax, arcface, adacos, subcluster_adacos
    c.train.margin = 0.0          # arcface: additive angular margin (radians)
    c.train.loss_scale = 30.0     # arcface: fixed logit scale s
    c.train.num_subclusters = 1   # subcluster_adacos: centres per class
    c.train.mixup_alpha = 0.0     # mixup Beta(alpha, alpha) of inputs and one-hot targets; 0 = off
    c.train.compute_dtype = "float32"  # or "bfloat16": matmuls/convs; params, BN statistics, loss stay float32
    c.train.learning_rate = 1e-3
    c.train.num_epochs = 100
    c.train.batch_size = 256
    c.train.precise_bn_batches = 200  # BatchNorm statistics recomputed after training over this many batches (0: off)
    c.train.log_every_steps = 200
    c.train.num_devices = 0       # 0 = every device

    c.ckpt = ml_collections.ConfigDict()
    c.ckpt.save_every_steps = 2000
    c.ckpt.keep = 2

    c.eval = ml_collections.ConfigDict()
    c.eval.scores = "mse"         # comma-separated scoring methods (mdg/score_methods.py)
    c.eval.decision_percentile = 0.9
    c.eval.max_fpr = 0.1
    c.eval.knn_k = 1              # neighbours of the kNN embedding score
    c.eval.tensorboard = True     # TensorBoard event files in WORKDIR/tensorboard (needs tensorboardX)
    return c


def split_variant(variant: str, sizes: tuple[str, ...], options: tuple[str, ...], file: str
                  ) -> tuple[str, list[str]]:
    """``"tiny,arcface,mixup"`` -> ``("tiny", ["arcface", "mixup"])``: at most one size, any options.

    Raises ValueError naming ``file`` and the known names for anything else.
    """
    tokens = [t.strip() for t in (variant or "").split(",") if t.strip()]
    size = [t for t in tokens if t in sizes]
    unknown = [t for t in tokens if t not in sizes and t not in options]
    if unknown or len(size) > 1:
        raise errors.UserError(f"unknown variant {variant!r} of {file}: use at most one size of {sizes} and any of "
                         f"{options}, comma-separated (e.g. {sizes[-1]},{options[0] if options else ''})")
    return (size[0] if size else "default"), [t for t in tokens if t in options]


def small_synthetic(c: ml_collections.ConfigDict, num_source_train: int = 24, num_target_train: int = 3,
                    num_test: int = 10) -> None:
    """Shrinks the built-in synthetic dataset (the default run has to fit a 2-core CPU).

    The defaults are the CPU-sized data of every model's default run (clips per section: source
    and target training clips, test clips per domain and label): the autoencoder and the
    classifiers are compared on the same clips, as the MIMII DG paper trains both baselines on one
    development set. Ten test clips per (domain, label), 40 per section: at five, a bootstrap
    resample of a method's clips often ranked every anomaly of some (section, domain) below every
    normal clip, and the harmonic mean of that AUC 0 made sweep intervals span -47 to +51 points.
    """
    c.data.synthetic.num_source_train = num_source_train
    c.data.synthetic.num_target_train = num_target_train
    c.data.synthetic.num_test = num_test


def tiny_run(c: ml_collections.ConfigDict, batch_size: int, eval_batch_size: int) -> None:
    """The ``:tiny`` variants' smoke-run settings: two machine types of 2 s clips, 2 epochs.

    Every model's tiny variant shares the same synthetic data, so tests generate it once.
    """
    small_synthetic(c, num_source_train=4, num_target_train=2, num_test=2)
    c.data.synthetic.machines = "fan,valve"
    c.data.synthetic.duration_s = 2.0
    c.train.num_epochs = 2
    c.train.batch_size = batch_size
    c.train.log_every_steps = 10
    c.ckpt.save_every_steps = 20
    c.input.eval_batch_size = eval_batch_size
