"""MobileNetV2 baseline of the MIMII DG paper: classify sections (or attributes), score by negative logit.

Variants (``--config configs/mobilenet_v2.py:VARIANT[,OPTION...]``), one size:
  (none)  the paper's model and training settings on a synthetic dataset sized for a 2-core CPU
          (the AE's default clips, 24 + 3 training clips per section)
  full    full-size synthetic dataset (990 + 10 train, 200 test clips per section)
  tiny    seconds-long smoke run (tests)
and any domain-generalization options (README, "Domain-generalization ablations"):
  arcface            ArcFace loss, cosine head, margin 0.7 rad, scale 30 (STgram-MFN, Liu et al. 2022)
  adacos             dynamic AdaCos loss (Zhang et al. 2019), cosine head, adaptive scale
  subcluster_adacos  sub-cluster AdaCos (Wilkinghoff 2021), 16 centres per class
  mixup              mixup of inputs and one-hot targets, alpha 1 (Zhang et al. 2018)
e.g. ``:subcluster_adacos,mixup`` or ``:tiny,arcface``. DCASE 2023 (one section per machine type):
``--config.data.target=section_attribute``. One classifier of every machine type's sections (as
the DCASE systems that train one model for all types; the better classifier on the synthetic data,
README "Results of the default runs"): ``--config.data.target=machine_section``.
"""

from mdg import config_defaults

SIZES = ("default", "full", "tiny")
# Domain-generalization options: config overrides (sources in the module docstring and README).
DG_OPTIONS = {
    "arcface": {"loss": "arcface", "margin": 0.7, "loss_scale": 30.0},
    "adacos": {"loss": "adacos"},
    "subcluster_adacos": {"loss": "subcluster_adacos", "num_subclusters": 16},
    "mixup": {"mixup_alpha": 1.0},
}
# Scores that use what the DG losses shape: the embedding and the class centres.
EMBEDDING_SCORES = "neg_logit,knn,centre,centre_domain,mahalanobis_embedding"


def get_config(variant: str = ""):
    size, options = config_defaults.split_variant(variant, SIZES, tuple(DG_OPTIONS), "configs/mobilenet_v2.py")
    c = config_defaults.base_config()
    c.model.name = "mobilenet_v2"
    c.model.alpha = 0.5
    # Keras' MobileNetV2 BN momentum. It assumes a long run (the full-size baseline makes ~15k
    # steps). Scoring does not depend on it (the statistics are recomputed after training,
    # train.precise_bn_batches); the small variants below lower it so that the running
    # statistics, and with them the validation loss of every epoch, follow a short run.
    c.model.bn_momentum = 0.999
    c.model.conv_impl = "auto"    # depthwise / 1x1 convs: "cpu_tuned" on CPU, "native" elsewhere (or force one)
    c.data.target = "section"

    c.input.window = 64           # 64 frames x 128 mels per patch
    c.input.train_hop = 8
    c.input.eval_hop = 1
    c.input.flatten = False
    c.input.eval_batch_size = 256

    c.train.loss = "softmax"
    c.train.learning_rate = 1e-4  # the paper; the Keras baseline code used 1e-5
    c.train.num_epochs = 20
    c.train.batch_size = 128
    c.train.log_every_steps = 100
    c.eval.scores = "neg_logit,knn"

    if size == "default":
        config_defaults.small_synthetic(c)   # the AE's clips: 24 + 3 training clips per section
        # A patch every 18 frames (14 per clip) keeps the step count (~780) of the earlier default,
        # 10 + 2 clips at hop 8, and with it the run time: more clips, fewer overlapping patches.
        c.input.train_hop = 18
        c.model.bn_momentum = 0.99
        # 140 steps per machine type, a hundredth of the full-size run's: at the paper's 1e-4 the
        # jittered windows are still underfit at the end (slider, seed 0: training loss 0.63,
        # held-out clip accuracy 0.61); at 1e-3, 0.007 and 0.97 (docs/synthetic.md, session 11).
        c.train.learning_rate = 1e-3
    elif size == "tiny":
        config_defaults.tiny_run(c, batch_size=16, eval_batch_size=64)
        c.model.alpha = 0.35
        c.model.bn_momentum = 0.5
        c.input.window = 32
        c.input.eval_hop = 8
    for option in options:
        c.train.update(DG_OPTIONS[option])
    if options:
        c.eval.scores = EMBEDDING_SCORES
    return c
