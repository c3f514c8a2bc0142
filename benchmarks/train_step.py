"""Training and inference throughput of mdg's models in JAX against the same networks in PyTorch.

Measured on this machine's CPU in one run:

  ae_train    autoencoder (640-128x4-8-128x4-640, BN), batch 256, Adam lr 1e-3, MSE    samples/s
  ae_infer    autoencoder reconstruction, eval mode, batch 256                          samples/s
  mnv2_train  MobileNetV2 alpha 0.5 on 64x128x1 patches, batch 128, Adam lr 1e-4,
              softmax cross-entropy                                                     patches/s
  mnv2_infer  MobileNetV2 logits + embedding, eval mode, batch 256                     patches/s
  mnv2_train_native  mnv2_train with ``conv_impl="native"`` (XLA's grouped convolution and plain
              matmuls, what GPU/TPU run) in place of the CPU-tuned layers ("auto" on CPU)
  ae_train_bf16, mnv2_train_bf16, mnv2_infer_bf16  the same in bfloat16 (``dtype="bfloat16"``:
              float32 parameters, bf16 matmuls/convolutions) against torch's
              ``torch.autocast("cpu", dtype=torch.bfloat16)`` of the float32 torch network

JAX training: mdg's own update step (``mdg.train.train_step_fn``, what ``python -m mdg.main``
runs): one jit-compiled pure function per step, state buffers donated, the batch sharded over a
mesh of every device. Inference: one jit call per batch of the eval-mode model. Compile time (first
call minus a steady call) is reported on its own under ``compile_s``. XLA's default flags: the
CPU flags tried (oneDNN, XNNPACK graph fusion, fast math, single-threaded Eigen) made no
difference beyond the noise.

PyTorch: ``torch.nn`` definitions of the same layer tables (below; 3x3 convs with symmetric
padding 1, same shapes and FLOPs as Keras/XLA "SAME"), eager mode, ``torch.optim.Adam(fused=True)``,
MobileNetV2 in ``channels_last`` memory format and ``torch.inference_mode`` for inference: the
fastest standard settings measured here (channels_last +30 %, fused Adam +10 % over the defaults).
Parameter counts of the two implementations are checked to be equal. Both frameworks use every
usable core (``torch.set_num_threads``; XLA's CPU thread pool does by default), which gives the
headline ratios; torch is also timed with one intra-op thread, reported for reference with the
ratio to the faster torch setting: on a busy machine, or for the tiny autoencoder, one thread can
win. ``OMP_WAIT_POLICY=PASSIVE`` (unless set) stops libgomp's spinning threads from stealing the
cores they share, which otherwise slows multi-threaded torch several times on a shared machine.

Inputs are random arrays already in memory (a few distinct batches cycled): this measures the model
step alone. Timed passes of the two frameworks alternate and each side's fastest pass counts, which
damps the noise of a shared machine.

Each measured thing is one ``Workload`` made by one function, listed in ``WORKLOADS``. The input
pipeline (``mdg.data.pipeline.TrainBatches``: shuffled window gathers from in-memory log-Mels) is
timed alone for each training workload and reported as windows/s and as its ratio to the step.

    python benchmarks/train_step.py                        # all models
    python benchmarks/train_step.py --steps 50 --models ae
    python benchmarks/train_step.py --workloads mnv2_train,mnv2_train_native

Prints a table, then exactly one JSON line (the last line of stdout).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import dataclasses
import functools
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read by libgomp when torch loads

from flax import nnx
import jax
import numpy as np
import torch
from torch import nn

from mdg import host_memory, objectives, sharding, train
from mdg.data import pipeline
from mdg.models.autoencoder import AutoEncoder
from mdg.models.mobilenet_v2 import (FIRST_CONV_CHANNELS, INVERTED_RESIDUAL_STAGES,
                                     LAST_CONV_CHANNELS, MobileNetV2, make_divisible)

AE_BATCH, AE_LR, AE_DIM = 256, 1e-3, 640
MNV2_BATCH, MNV2_LR, MNV2_ALPHA, MNV2_CLASSES = 128, 1e-4, 0.5, 6
PATCH = (64, 128)  # frames x mels
INFER_BATCH = 256
NUM_DISTINCT_BATCHES = 4


@dataclasses.dataclass
class Runner:
    """A prepared side of a workload: ``run(steps)`` performs ``steps`` steps and waits for them."""

    run: Callable[[int], None]
    num_parameters: int
    compile_s: float | None = None


@dataclasses.dataclass
class Workload:
    """One measured thing: the same work in JAX and PyTorch, ``items`` inputs per step."""

    name: str
    model: str  # the --models key it belongs to
    unit: str
    items: int
    jax: Callable[[], Runner]
    torch: Callable[[], Runner]


# ----------------------------------------------------------------------------- PyTorch networks

class TorchAutoEncoder(nn.Sequential):
    """The baseline autoencoder in torch.nn (BN momentum 0.01 in torch's convention = Keras's
    0.99)."""

    def __init__(self, input_dim: int = 640, hidden_dim: int = 128, num_hidden_layers: int = 4,
                 bottleneck_dim: int = 8):
        widths = ([input_dim] + [hidden_dim] * num_hidden_layers + [bottleneck_dim]
                  + [hidden_dim] * num_hidden_layers)
        layers: list[nn.Module] = []
        for din, dout in zip(widths, widths[1:]):
            layers += [nn.Linear(din, dout), nn.BatchNorm1d(dout, momentum=0.01, eps=1e-3),
                       nn.ReLU()]
        super().__init__(*layers, nn.Linear(hidden_dim, input_dim))


def torch_conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                  activate: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout, momentum=0.001, eps=1e-3)]
    return layers + [nn.ReLU6()] if activate else layers


class TorchInvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        layers = torch_conv_bn(cin, hidden, 1) if expansion != 1 else []
        layers += torch_conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += torch_conv_bn(hidden, cout, 1, activate=False)
        self.layers = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class TorchMobileNetV2(nn.Module):
    """MobileNetV2 from mdg's layer table, 1 input channel, channels_last activations; maps
    ``(batch, frames, mels)`` to ``(logits, embedding)``."""

    def __init__(self, num_classes: int, alpha: float = 0.5):
        super().__init__()
        channels = make_divisible(FIRST_CONV_CHANNELS * alpha)
        layers = torch_conv_bn(1, channels, 3, stride=2)
        for expansion, base, repeats, stride in INVERTED_RESIDUAL_STAGES:
            out = make_divisible(int(base * alpha))
            for index in range(repeats):
                layers.append(TorchInvertedResidual(channels, out, stride if index == 0 else 1,
                                                    expansion))
                channels = out
        last = make_divisible(LAST_CONV_CHANNELS * alpha) if alpha > 1.0 else LAST_CONV_CHANNELS
        layers += torch_conv_bn(channels, last, 1)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        embedding = self.features(x).mean(dim=(2, 3))
        return self.classifier(embedding), embedding


# ----------------------------------------------------------------------------- runners

def random_batches(shape: tuple[int, ...], num_classes: int | None = None, seed: int = 0):
    """NUM_DISTINCT_BATCHES float32 inputs of ``shape``, and as targets int32 labels in
    ``[0, num_classes)`` or, without ``num_classes``, the inputs themselves."""
    rng = np.random.default_rng(seed)
    inputs = [rng.normal(size=shape).astype(np.float32) for _ in range(NUM_DISTINCT_BATCHES)]
    if num_classes is None:
        return inputs, inputs
    labels = [rng.integers(0, num_classes, shape[0]).astype(np.int32)
              for _ in range(NUM_DISTINCT_BATCHES)]
    return inputs, labels


def count_jax_parameters(model: nnx.Module) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def count_torch_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def with_compile_time(run: Callable[[int], None], num_parameters: int) -> Runner:
    """Runner whose compile time is its first step (tracing, XLA compilation and one step) minus
    a steady-state step."""
    start = time.perf_counter()
    run(1)
    first = time.perf_counter() - start
    start = time.perf_counter()
    run(1)
    return Runner(run, num_parameters, max(first - (time.perf_counter() - start), 0.0))


def jax_train_state(model: nnx.Module, learning_rate: float, classifier: bool, mesh):
    """(jitted step, replicated state) of mdg's own update step (``train.train_step_fn``)."""
    objective = objectives.Objective("softmax" if classifier else "mse")
    graphdef = nnx.split(model, nnx.Param, ...)[0]
    num_classes = model.head.dense.out_features if classifier else 0
    state = sharding.replicate(train.initial_state(model, train.optimizer(learning_rate), seed=0), mesh)
    return train.train_step_fn(graphdef, objective, num_classes, learning_rate, 0.0), state


def jax_train_runner(model: nnx.Module, learning_rate: float, classifier: bool, inputs,
                     targets) -> Runner:
    """Adam training with mdg's own update step (``train.train_step_fn``, what ``mdg.main`` runs):
    one jit call per step, state donated, batch sharded over a mesh of every device."""
    mesh = sharding.make_mesh()
    step, state = jax_train_state(model, learning_rate, classifier, mesh)
    labels = targets if classifier else [np.zeros(len(x), np.int32) for x in inputs]
    batches = [sharding.shard_batch({"x": x, "y": y}, mesh) for x, y in zip(inputs, labels)]
    holder = [state, train.new_monitor(mesh)]

    def run(steps: int) -> None:
        state, monitor = holder
        for i in range(steps):
            state, monitor = step(state, monitor, batches[i % len(batches)])
        holder[:] = jax.block_until_ready((state, monitor))

    return with_compile_time(run, count_jax_parameters(model))


def fed_step_rate(steps: int) -> tuple[float, float]:
    """Samples/s of the AE train step (the fastest step, where input costs most) fed as ``mdg.main``
    feeds it: ``pipeline.TrainBatches`` gathers through ``train.prefetch_to_devices`` (2 batches
    ahead), against the same step on batches already on the device. Best of 3 passes each."""
    mesh = sharding.make_mesh()
    step, state = jax_train_state(AutoEncoder(input_dim=AE_DIM, rngs=nnx.Rngs(0)), AE_LR, False, mesh)
    log_mels = np.random.default_rng(0).normal(size=(300, 313, 128)).astype(np.float32)
    stream = train.prefetch_to_devices(
        pipeline.TrainBatches(log_mels, 5, 1, AE_BATCH, seed=0, flatten=True), mesh)
    placed = [next(stream)[0] for _ in range(4)]
    holder = [state, train.new_monitor(mesh)]

    def timed(next_batch) -> float:
        best = float("inf")
        for _ in range(3):
            state, monitor = holder
            start = time.perf_counter()
            for i in range(steps):
                state, monitor = step(state, monitor, next_batch(i))
            holder[:] = jax.block_until_ready((state, monitor))
            best = min(best, time.perf_counter() - start)
        return steps * AE_BATCH / best

    timed(lambda i: placed[i % 4])   # compile and warm up
    return timed(lambda i: next(stream)[0]), timed(lambda i: placed[i % 4])


def pipeline_rate(window: int, hop: int, batch: int, flatten: bool, steps: int) -> float:
    """Windows/s of the training input pipeline alone (``pipeline.TrainBatches`` over 1000 clips of
    313 frames, shuffled gathers, with labels), the best of 3 passes of ``steps`` batches."""
    log_mels = np.random.default_rng(0).normal(size=(1000, 313, 128)).astype(np.float32)
    batches = pipeline.TrainBatches(log_mels, window, hop, batch, seed=0, flatten=flatten,
                                    clip_labels=np.zeros(1000, np.int32))
    next(batches)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            next(batches)
        best = min(best, time.perf_counter() - start)
    return steps * batch / best


def jax_infer_runner(model: nnx.Module, inputs) -> Runner:
    """Eval-mode forward passes of ``model``: one jit call per batch."""
    model.eval()
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    infer = jax.jit(lambda leaves, x: nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))(x))
    inputs = jax.device_put(inputs)

    def run(steps: int) -> None:
        jax.block_until_ready([infer(leaves, inputs[i % len(inputs)]) for i in range(steps)])

    return with_compile_time(run, count_jax_parameters(model))


def torch_train_runner(model: nn.Module, learning_rate: float, loss_fn, inputs, targets,
                       autocast: bool = False) -> Runner:
    """Adam (fused) training; ``autocast``: forward pass and loss under bfloat16 autocast."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, fused=True)
    inputs = [torch.from_numpy(x) for x in inputs]
    targets = [torch.from_numpy(y).long() if y.dtype == np.int32 else torch.from_numpy(y)
               for y in targets]

    def run(steps: int) -> None:
        for i in range(steps):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(model(inputs[i % len(inputs)]), targets[i % len(inputs)])
            loss.backward()
            optimizer.step()

    return Runner(run, count_torch_parameters(model))


def torch_infer_runner(model: nn.Module, inputs, autocast: bool = False) -> Runner:
    model.eval()
    inputs = [torch.from_numpy(x) for x in inputs]

    def run(steps: int) -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                     enabled=autocast):
            for i in range(steps):
                model(inputs[i % len(inputs)])

    return Runner(run, count_torch_parameters(model))


def torch_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(outputs, targets)


def torch_cross_entropy(outputs: tuple[torch.Tensor, torch.Tensor],
                        labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(outputs[0], labels)


# ----------------------------------------------------------------------------- workloads

BF16 = "bfloat16"


def ae_train(dtype: str = "float32") -> Workload:
    data = functools.partial(random_batches, (AE_BATCH, AE_DIM))
    suffix = "_bf16" if dtype == BF16 else ""
    return Workload(
        f"ae_train{suffix}", "ae", "samples/s", AE_BATCH,
        jax=lambda: jax_train_runner(AutoEncoder(input_dim=AE_DIM, dtype=dtype, rngs=nnx.Rngs(0)),
                                     AE_LR, False, *data()),
        torch=lambda: torch_train_runner(TorchAutoEncoder(AE_DIM), AE_LR, torch_mse, *data(),
                                         autocast=dtype == BF16),
    )


def ae_infer() -> Workload:
    data = functools.partial(random_batches, (INFER_BATCH, AE_DIM))
    return Workload(
        "ae_infer", "ae", "samples/s", INFER_BATCH,
        jax=lambda: jax_infer_runner(AutoEncoder(input_dim=AE_DIM, rngs=nnx.Rngs(0)), data()[0]),
        torch=lambda: torch_infer_runner(TorchAutoEncoder(AE_DIM), data()[0]),
    )


def mnv2(conv_impl: str = "auto", dtype: str = "float32") -> MobileNetV2:
    return MobileNetV2(MNV2_CLASSES, alpha=MNV2_ALPHA, conv_impl=conv_impl, dtype=dtype,
                       rngs=nnx.Rngs(0))


def mnv2_train(conv_impl: str = "auto", dtype: str = "float32") -> Workload:
    data = functools.partial(random_batches, (MNV2_BATCH, *PATCH), MNV2_CLASSES)
    suffix = ("_native" if conv_impl == "native" else "") + ("_bf16" if dtype == BF16 else "")
    return Workload(
        f"mnv2_train{suffix}", "mobilenet_v2", "patches/s", MNV2_BATCH,
        jax=lambda: jax_train_runner(mnv2(conv_impl, dtype), MNV2_LR, True, *data()),
        torch=lambda: torch_train_runner(TorchMobileNetV2(MNV2_CLASSES, MNV2_ALPHA), MNV2_LR,
                                         torch_cross_entropy, *data(), autocast=dtype == BF16),
    )


def mnv2_infer(dtype: str = "float32") -> Workload:
    data = functools.partial(random_batches, (INFER_BATCH, *PATCH))
    return Workload(
        "mnv2_infer" + ("_bf16" if dtype == BF16 else ""), "mobilenet_v2", "patches/s",
        INFER_BATCH,
        jax=lambda: jax_infer_runner(mnv2(dtype=dtype), data()[0]),
        torch=lambda: torch_infer_runner(TorchMobileNetV2(MNV2_CLASSES, MNV2_ALPHA), data()[0],
                                         autocast=dtype == BF16),
    )


# Every measured thing, in order; input-pipeline workloads are added here the same way.
WORKLOADS: list[Callable[[], Workload]] = [
    ae_train, ae_infer, mnv2_train, mnv2_infer,
    functools.partial(mnv2_train, conv_impl="native"),
    functools.partial(ae_train, dtype=BF16), functools.partial(mnv2_train, dtype=BF16),
    functools.partial(mnv2_infer, dtype=BF16),
]


def measure(workload: Workload, steps: int, rounds: int, cores: int) -> dict:
    """Prepare both sides, warm them up, then alternate timed passes; the fastest pass counts.

    Torch runs with ``cores`` intra-op threads like JAX (the headline ratio) and, for reference,
    with one thread, which on a shared or small machine is sometimes faster.
    """
    runners = {"jax": workload.jax(), "torch": workload.torch()}
    sizes = {framework: runner.num_parameters for framework, runner in runners.items()}
    if sizes["jax"] != sizes["torch"]:
        raise RuntimeError(f"{workload.name}: JAX and PyTorch networks differ in size: {sizes}")
    settings = {"jax": ("jax", None), "torch": ("torch", cores), "torch_1thread": ("torch", 1)}
    for framework, threads in settings.values():
        if threads is not None:
            torch.set_num_threads(threads)
        runners[framework].run(2)
    best = dict.fromkeys(settings, float("inf"))
    for _ in range(rounds):
        for key, (framework, threads) in settings.items():
            if threads is not None:
                torch.set_num_threads(threads)
            start = time.perf_counter()
            runners[framework].run(steps)
            best[key] = min(best[key], time.perf_counter() - start)
    torch.set_num_threads(cores)
    rates = {key: steps * workload.items / seconds for key, seconds in best.items()}
    return {"name": workload.name, "unit": workload.unit, **rates,
            "ratio": rates["jax"] / rates["torch"],
            "ratio_vs_best_torch": rates["jax"] / max(rates["torch"], rates["torch_1thread"]),
            "compile_s": runners["jax"].compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed pass")
    parser.add_argument("--rounds", type=int, default=3, help="alternating passes per framework")
    parser.add_argument("--models", default="ae,mobilenet_v2",
                        help="comma-separated subset of: ae, mobilenet_v2")
    parser.add_argument("--workloads", default="",
                        help="comma-separated workload names (default: all of --models)")
    args = parser.parse_args()
    host_memory.configure_malloc()   # as mdg.main: the AE step's speed depends on it (mdg/host_memory.py)
    workloads = [factory() for factory in WORKLOADS]
    for flag, field in (("models", "model"), ("workloads", "name")):
        known = {getattr(workload, field) for workload in workloads}
        chosen = set(filter(None, getattr(args, flag).split(","))) or known
        if not chosen <= known:
            raise SystemExit(f"--{flag}: unknown {sorted(chosen - known)}; known: {sorted(known)}")
        workloads = [workload for workload in workloads if getattr(workload, field) in chosen]

    cores = len(os.sched_getaffinity(0))
    print(f"CPU cores usable: {cores}; jax {jax.__version__} on {jax.devices()[0].platform}; "
          f"torch {torch.__version__} with {cores} intra-op threads (and 1 for reference)")
    results = [measure(workload, args.steps, args.rounds, cores) for workload in workloads]

    print(f"{'workload':<11} {'unit':<10} {'jax':>9} {'torch':>9} {'jax/torch':>9} "
          f"{'torch 1thr':>10} {'jax/best':>9} {'compile s':>9}")
    for r in results:
        print(f"{r['name']:<11} {r['unit']:<10} {r['jax']:>9.0f} {r['torch']:>9.0f} "
              f"{r['ratio']:>9.2f} {r['torch_1thread']:>10.0f} {r['ratio_vs_best_torch']:>9.2f} "
              f"{r['compile_s']:>9.2f}")

    # The input pipeline alone, against the train step it has to feed.
    pipeline_settings = {"ae_train": (5, 1, AE_BATCH, True), "mnv2_train": (64, 8, MNV2_BATCH, False)}
    feeds = {r["name"]: pipeline_rate(*pipeline_settings[r["name"]], steps=200)
             for r in results if r["name"] in pipeline_settings}
    print(f"\n{'input pipeline':<15} {'windows/s':>10} {'train step/s':>12} {'pipeline/step':>13}")
    for r in results:
        if r["name"] in feeds:
            print(f"{r['name']:<15} {feeds[r['name']]:>10.0f} {r['jax']:>12.0f} "
                  f"{feeds[r['name']] / r['jax']:>13.1f}")

    if "ae_train" in feeds:
        fed, placed = fed_step_rate(steps=200)
        print(f"AE step fed by prefetch_to_devices: {fed:.0f} samples/s, on device-resident batches "
              f"{placed:.0f}: {fed / placed:.2f} (1.00 = the step never waits on input)")
    summary: dict = {"benchmark": "train_step"}
    for r in results:
        if r["name"] == "ae_train":
            summary.update(ae_jax_samples_per_s=round(r["jax"], 1),
                           ae_torch_samples_per_s=round(r["torch"], 1),
                           ae_ratio=round(r["ratio"], 3))
        else:
            summary[f"{r['name']}_ratio"] = round(r["ratio"], 3)
    summary["throughput"] = {
        r["name"]: {key: round(r[key], 1) for key in ("jax", "torch", "torch_1thread")}
        | {"unit": r["unit"], "ratio_vs_best_torch": round(r["ratio_vs_best_torch"], 3)}
        for r in results}
    summary["compile_s"] = {r["name"]: round(r["compile_s"], 2) for r in results}
    if "ae_train" in feeds:
        summary["ae_fed_over_resident"] = round(fed / placed, 3)
    # JAX against JAX: bfloat16 over float32, CPU-tuned layers over native ones.
    jax_rates = {r["name"]: r["jax"] for r in results}
    for key, (numerator, denominator) in {
            "ae_train_bf16_over_f32": ("ae_train_bf16", "ae_train"),
            "mnv2_train_bf16_over_f32": ("mnv2_train_bf16", "mnv2_train"),
            "mnv2_infer_bf16_over_f32": ("mnv2_infer_bf16", "mnv2_infer"),
            "mnv2_train_cpu_tuned_over_native": ("mnv2_train", "mnv2_train_native")}.items():
        if numerator in jax_rates and denominator in jax_rates:
            summary[key] = round(jax_rates[numerator] / jax_rates[denominator], 3)
            print(f"jax {key}: {summary[key]:.2f}x")
    summary["pipeline_per_s"] = {name: round(rate, 1) for name, rate in feeds.items()}
    summary["pipeline_to_step_ratio"] = {r["name"]: round(feeds[r["name"]] / r["jax"], 2)
                                         for r in results if r["name"] in feeds}
    summary.update(steps=args.steps, rounds=args.rounds, cores=cores)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
