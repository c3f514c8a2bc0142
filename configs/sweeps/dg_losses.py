"""The domain-generalization ablation grid: baselines and DG variants x seeds on the default
synthetic benchmark.

    python -m mdg.sweep --config configs/sweeps/dg_losses.py --workdir workdirs/dg_sweep
    python -m mdg.sweep --config configs/sweeps/dg_losses.py:cpu --workdir workdirs/dg_sweep_cpu
    python -m mdg.sweep --config configs/sweeps/dg_losses.py:baselines --workdir workdirs/baselines
    python -m mdg.sweep --config configs/sweeps/dg_losses.py:tiny --workdir /tmp/dg_tiny   # tests

``cpu``: what fits one 2-core CPU in about an hour: the same default data, models and training,
on two of the five machine types (fan, valve), without the plain ``adacos`` variant (sub-cluster
AdaCos with its 16 centres per class is the AdaCos loss the DCASE systems use).

``baselines``: the two default main jobs (``configs/ae.py``, ``configs/mobilenet_v2.py``, all five
machine types, their own scores) and the same MobileNetV2 as one classifier of all fifteen
(machine type, section) classes (``--config.data.target=machine_section``, as the DCASE systems
that train one model for every machine type) x 3 seeds, differences taken against the AE's MSE:
the README's default-run table (about 90 minutes on a 2-core CPU).

``machine_section``: the best DG variant of the ``cpu`` sweep (sub-cluster AdaCos with mixup)
against softmax, both as one classifier of all fifteen (machine type, section) classes on all five
machine types x 3 seeds (its softmax runs are the ``baselines`` sweep's, same command and seeds:
link them in to skip them; about 40 minutes more on a 2-core CPU).

``variants``: name -> ``"<config file>[:variant] [--config.KEY=VALUE ...]"``, the arguments of one
``python -m mdg.main`` run (the sweep adds ``--workdir`` and ``--config.seed``). In the full grid
and ``cpu`` every MobileNetV2 variant is scored with the embedding scores too, so a loss and a
scoring method are compared separately. ``baseline``: the ``variant/score`` that differences are
taken against.
"""
import ml_collections

EMBEDDING_SCORES = "--config.eval.scores=neg_logit,knn,centre,centre_domain,mahalanobis_embedding"
# MobileNetV2 as one classifier of every machine type's sections; the softmax run is one command in
# both the ``baselines`` and ``machine_section`` sweeps, so its runs serve both.
MACHINE_SECTION = "--config.data.target=machine_section"
MACHINE_SECTION_SOFTMAX = f"configs/mobilenet_v2.py {MACHINE_SECTION}"


def get_config(variant: str = ""):
    c = ml_collections.ConfigDict()
    c.seeds = (0, 1, 2)
    c.bootstrap = 200            # replicates of the difference interval (mdg/compare.py)
    if variant == "tiny":
        c.variants = {"ae": "configs/ae.py:tiny", "ae_mixup": "configs/ae.py:tiny,mixup"}
        c.seeds = (0, 1)
        c.bootstrap = 50
        c.baseline = "ae/mse"
        return c
    if variant == "baselines":
        c.variants = {"ae": "configs/ae.py", "mobilenet_v2": "configs/mobilenet_v2.py",
                      "mobilenet_v2_machine_section": MACHINE_SECTION_SOFTMAX}
        c.baseline = "ae/mse"
        return c
    if variant == "machine_section":
        c.variants = {"mobilenet_v2_machine_section": MACHINE_SECTION_SOFTMAX,
                      "subcluster_adacos_mixup_machine_section":
                          f"configs/mobilenet_v2.py:subcluster_adacos,mixup {MACHINE_SECTION}"}
        c.baseline = "mobilenet_v2_machine_section/neg_logit"
        return c
    if variant not in ("", "cpu"):
        raise ValueError(f"unknown variant {variant!r} of configs/sweeps/dg_losses.py "
                         "(known: cpu, baselines, machine_section, tiny)")
    c.variants = {
        "ae": "configs/ae.py",
        "mobilenet_v2": f"configs/mobilenet_v2.py {EMBEDDING_SCORES}",
        "arcface": "configs/mobilenet_v2.py:arcface",
        "adacos": "configs/mobilenet_v2.py:adacos",
        "subcluster_adacos": "configs/mobilenet_v2.py:subcluster_adacos",
        "subcluster_adacos_mixup": "configs/mobilenet_v2.py:subcluster_adacos,mixup",
    }
    c.baseline = "mobilenet_v2/neg_logit"
    if variant == "cpu":
        machines = " --config.data.synthetic.machines=fan,valve"
        c.variants = {name: arguments + machines for name, arguments in c.variants.items() if name != "adacos"}
    return c
