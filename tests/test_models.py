"""Tests for mdg.models: parameter counts, shapes, BatchNorm modes, padding, init, registry."""
import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from mdg.models import AutoEncoder, MobileNetV2, create_model
from mdg.models.layers import (DepthwiseConv, FusedBatchNorm, PointwiseConv, compute_dtype,
                               pointwise_conv, resolve_conv_impl)
from mdg.models.mobilenet_v2 import ConvBN


def count(model: nnx.Module, kind) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, kind)))


def dense_counts(widths: list[int], batch_norm: bool) -> tuple[int, int]:
    """(trainable, BN statistics) of a Dense chain with biases, BN after each layer if asked."""
    trainable = sum(i * o + o for i, o in zip(widths, widths[1:]))
    bn_channels = sum(widths[1:]) if batch_norm else 0
    return trainable + 2 * bn_channels, 2 * bn_channels


# ----------------------------------------------------------------------------- autoencoder

def test_autoencoder_baseline_parameter_count():
    model = AutoEncoder(rngs=nnx.Rngs(0))
    # Published baseline figure: 640-128-128-128-128-8-128-128-128-128-640, biases, BN on all
    # but the output layer: 267,928 trainable (Dense 265,864 + BN scale/offset 2 x 1,032).
    assert count(model, nnx.Param) == 267_928
    assert count(model, nnx.BatchStat) == 2 * (8 * 128 + 8)


def test_autoencoder_config_driven_sizes():
    model = create_model("autoencoder", nnx.Rngs(0), input_dim=320, hidden_dim=64,
                         num_hidden_layers=2, bottleneck_dim=4)
    hidden_trainable, hidden_stats = dense_counts([320, 64, 64, 4, 64, 64], batch_norm=True)
    output_trainable, _ = dense_counts([64, 320], batch_norm=False)
    assert count(model, nnx.Param) == hidden_trainable + output_trainable
    assert count(model, nnx.BatchStat) == hidden_stats
    x = np.random.default_rng(0).normal(size=(3, 320)).astype(np.float32)
    assert model(x).shape == (3, 320)
    assert model.encode(x).shape == (3, 4)


def test_autoencoder_batchnorm_train_and_eval_modes():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(16, 640)).astype(np.float32)
    model = AutoEncoder(rngs=nnx.Rngs(0))
    first = model.encoder[0]
    kernel = np.asarray(first.dense.kernel[...], np.float64)
    bias = np.asarray(first.dense.bias[...], np.float64)
    pre_bn = x.astype(np.float64) @ kernel + bias

    # Training mode (the NNX default): normalize with batch statistics (biased variance, Keras
    # epsilon 1e-3) and move the running averages by 1 - momentum = 0.01.
    out_train = first(x)
    expected = np.maximum((pre_bn - pre_bn.mean(0)) / np.sqrt(pre_bn.var(0) + 1e-3), 0.0)
    np.testing.assert_allclose(out_train, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(first.norm.mean[...], 0.01 * pre_bn.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(first.norm.var[...], 0.99 + 0.01 * pre_bn.var(0), rtol=1e-4)

    model(x)  # the full network in training mode updates every BN layer
    stats_after_train = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))
    assert all(np.any(mean != 0) for mean in jax.tree.leaves(stats_after_train)[::2])

    model.eval()
    out_eval = model(x)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.BatchStat), stats_after_train)
    # Running statistics make each output row independent of the rest of the batch.
    np.testing.assert_allclose(model(x[:1]), out_eval[:1], rtol=1e-5, atol=1e-5)
    model.train()
    assert not np.allclose(model(x[:2])[:1], model(x)[:1], atol=1e-3)


def test_autoencoder_keras_initialization():
    model = AutoEncoder(rngs=nnx.Rngs(0))
    kernel = np.asarray(model.encoder[0].dense.kernel[...])
    limit = np.sqrt(6.0 / (640 + 128))  # glorot_uniform
    assert np.abs(kernel).max() <= limit
    assert abs(kernel.std() - limit / np.sqrt(3.0)) < 0.02 * limit
    assert not np.any(model.encoder[0].dense.bias[...])
    assert not np.any(model.output.bias[...])


def test_autoencoder_rejects_wrong_input_width():
    with pytest.raises(ValueError, match=r"\(batch, 640\)"):
        AutoEncoder(rngs=nnx.Rngs(0))(np.zeros((2, 128), np.float32))
    with pytest.raises(ValueError, match="hidden_dim"):
        AutoEncoder(hidden_dim=0, rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------- MobileNetV2

# Channel tables worked out by hand from the paper's (t, c, n, s) rows with 8-rounding:
# alpha 1.0 keeps them; alpha 0.5 halves them (12 -> 16: nearest multiple of 8, ties up).
# Columns: first conv, [(t, out channels, n, s) per stage], last conv.
CHANNELS = {
    1.0: (32, [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1)], 1280),
    0.5: (16, [(1, 8, 1, 1), (6, 16, 2, 2), (6, 16, 3, 2), (6, 32, 4, 2), (6, 48, 3, 1),
               (6, 80, 3, 2), (6, 160, 1, 1)], 1280),
}


def mobilenet_v2_counts(alpha: float, in_channels: int, num_classes: int) -> tuple[int, int]:
    """(trainable, BN statistics) from the layer table: bias-free convs, BN = scale + offset
    trainable and mean + variance statistics per channel, Dense head with bias."""
    first, stages, last = CHANNELS[alpha]
    conv = 3 * 3 * in_channels * first
    bn = first
    c_in = first
    for t, c_out, n, _ in stages:
        for _ in range(n):
            hidden = t * c_in
            if t != 1:
                conv += c_in * hidden  # 1x1 expansion
                bn += hidden
            conv += 3 * 3 * hidden + hidden * c_out  # depthwise 3x3 + 1x1 projection
            bn += hidden + c_out
            c_in = c_out
    conv += c_in * last
    bn += last
    head = last * num_classes + num_classes
    return conv + 2 * bn + head, 2 * bn


def test_derivation_reproduces_keras_published_counts():
    # keras.applications.MobileNetV2(weights=None) summaries, 224x224x3 input, 1000 classes.
    assert sum(mobilenet_v2_counts(1.0, 3, 1000)) == 3_538_984
    assert mobilenet_v2_counts(1.0, 3, 1000)[0] == 3_504_872
    assert sum(mobilenet_v2_counts(0.5, 3, 1000)) == 1_987_224


@functools.cache
def abstract_mobilenet(alpha: float, in_channels: int = 1, num_classes: int = 7,
                       **kwargs) -> MobileNetV2:
    """Shapes-only model (no initializer runs), cached across tests; treat as read-only."""
    return nnx.eval_shape(lambda: MobileNetV2(num_classes, alpha=alpha, in_channels=in_channels,
                                              rngs=nnx.Rngs(0), **kwargs))


def random_mobilenet(alpha: float, seed: int = 4, **kwargs) -> MobileNetV2:
    """A MobileNetV2 with normal(0, 0.2) parameters and unit BN statistics, the same for the same
    ``seed`` whatever ``kwargs`` (conv_impl, dtype): random values in place of the initializers,
    which are slow to build on CPU."""
    graphdef, params, stats = nnx.split(abstract_mobilenet(alpha, **kwargs), nnx.Param,
                                        nnx.BatchStat)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(s.dtype), params)
    stats = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), stats)  # any valid mean and var
    return nnx.merge(graphdef, params, stats)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
@pytest.mark.parametrize("in_channels,num_classes", [(1, 6), (3, 1000)])
def test_mobilenet_v2_parameter_count(alpha, in_channels, num_classes):
    model = abstract_mobilenet(alpha, in_channels, num_classes)
    trainable, statistics = mobilenet_v2_counts(alpha, in_channels, num_classes)
    assert count(model, nnx.Param) == trainable
    assert count(model, nnx.BatchStat) == statistics


def forward_with_feature_map(model: MobileNetV2, x: jax.Array):
    """(logits, embedding, last inverted-residual feature map) for abstract shape checks."""
    features = model.stem(x[..., None])
    for block in model.blocks:
        features = block(features)
    return *model(x), features


@pytest.mark.parametrize("alpha,frames,mels,last_channels", [
    (0.5, 64, 128, 160), (0.5, 32, 128, 160), (0.5, 64, 64, 160), (0.5, 100, 128, 160),
    (1.0, 64, 128, 320)])
def test_mobilenet_v2_output_shapes(alpha, frames, mels, last_channels):
    x = jax.ShapeDtypeStruct((2, frames, mels), np.float32)
    logits, embedding, features = nnx.eval_shape(forward_with_feature_map,
                                                 abstract_mobilenet(alpha), x)
    assert logits.shape == (2, 7) and embedding.shape == (2, 1280)
    assert logits.dtype == embedding.dtype == np.float32
    # Five stride-2 layers, each ceil(n / 2) with SAME padding (100 -> 50, 25, 13, 7, 4).
    assert features.shape == (2, -(-frames // 32), -(-mels // 32), last_channels)


def test_mobilenet_v2_structure():
    blocks = abstract_mobilenet(0.5).blocks
    # Residual shortcuts exactly where stride is 1 and width is unchanged.
    assert [block.residual for block in blocks] == [
        False, False, True, False, True, True, False, True, True, True,
        False, True, True, False, True, True, False]
    assert blocks[0].expand is None and blocks[1].expand is not None


@pytest.mark.parametrize("size", [8, 9])
def test_stride2_conv_padding_matches_keras(size):
    """A stride-2 3x3 ConvBN (stem and downsampling depthwise convs) equals Keras's correct_pad
    zero padding + valid stride-2 correlation, and a training call moves the BN running mean
    by 1 - 0.999 of the batch mean."""
    conv_bn = ConvBN(1, 4, "full", stride=2, bn_momentum=0.999, bn_epsilon=1e-3, rngs=nnx.Rngs(0))
    x = np.random.default_rng(2).normal(size=(2, size, size)).astype(np.float32)
    kernel = np.asarray(conv_bn.conv.kernel[...], np.float64)  # (3, 3, 1, 4)
    before = 0 if size % 2 == 0 else 1  # correct_pad: (0, 1) even, (1, 1) odd
    padded = np.pad(x.astype(np.float64), ((0, 0), (before, 1), (before, 1)))
    expected = np.stack([
        np.stack([scipy.signal.correlate2d(image, kernel[:, :, 0, c], mode="valid")[::2, ::2]
                  for c in range(kernel.shape[-1])], axis=-1)
        for image in padded
    ])
    np.testing.assert_allclose(conv_bn.conv(x[..., None]), expected, rtol=1e-5, atol=1e-5)
    conv_bn(x[..., None])
    np.testing.assert_allclose(conv_bn.norm.mean[...], 0.001 * expected.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-7)


def module_and_gradients(module: nnx.Module, x: np.ndarray, dy: np.ndarray):
    """``module(x)`` and the gradients of ``sum(module(x) * dy)`` wrt x and every parameter."""
    loss = lambda module, x: jnp.sum(module(x) * dy)
    (param_grads, x_grad) = nnx.grad(loss, argnums=(0, 1))(module, x)
    return module(x), x_grad, jax.tree.map(np.asarray, param_grads)


@pytest.mark.parametrize("height,width,stride", [(8, 8, 1), (8, 6, 2), (7, 9, 2), (5, 3, 1),
                                                 (1, 2, 2)])
def test_depthwise_conv_impls_agree_with_xla_grouped_conv(height, width, stride):
    """The CPU-tuned depthwise conv (shifted multiply-adds, hand-written VJP) and the native one
    (XLA's grouped convolution, automatic differentiation): same outputs and gradients wrt
    inputs and kernel, odd sizes and strides included."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, height, width, 3)).astype(np.float32)
    results = []
    for conv_impl in ("cpu_tuned", "native"):
        conv = DepthwiseConv(3, 3, stride=stride, conv_impl=conv_impl, rngs=nnx.Rngs(0))
        dy = rng.normal(size=conv(x).shape).astype(np.float32) if not results else dy
        results.append(module_and_gradients(conv, x, dy))
    (out, dx, dparams), (expected, expected_dx, expected_dparams) = results
    assert out.shape == (2, -(-height // stride), -(-width // stride), 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dparams["kernel"][...], expected_dparams["kernel"][...],
                               rtol=1e-4, atol=1e-4)


def test_pointwise_conv_impls_agree():
    rng = np.random.default_rng(8)
    for c_in, c_out in [(3, 5), (5, 3)]:  # both branches of the kernel-gradient transpose
        x = rng.normal(size=(2, 5, 3, c_in)).astype(np.float32)
        dy = rng.normal(size=(2, 5, 3, c_out)).astype(np.float32)
        (out, dx, dparams), (expected, expected_dx, expected_dparams) = [
            module_and_gradients(PointwiseConv(c_in, c_out, conv_impl=conv_impl,
                                               rngs=nnx.Rngs(0)), x, dy)
            for conv_impl in ("cpu_tuned", "native")]
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dx, expected_dx, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dparams["kernel"][...], expected_dparams["kernel"][...],
                                   rtol=1e-5, atol=1e-5)


def test_conv_impl_auto_follows_the_backend(monkeypatch):
    assert resolve_conv_impl("auto") == "cpu_tuned"  # the tests run on CPU
    assert resolve_conv_impl("native") == "native"
    for backend in ("gpu", "tpu"):
        monkeypatch.setattr(jax, "default_backend", lambda: backend)
        assert resolve_conv_impl("auto") == "native"
        assert resolve_conv_impl("cpu_tuned") == "cpu_tuned"
    with pytest.raises(ValueError, match="conv_impl must be one of"):
        PointwiseConv(3, 4, conv_impl="cudnn", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="conv_impl must be one of"):
        create_model("mobilenet_v2", nnx.Rngs(0), num_classes=3, conv_impl="fast")


def test_pointwise_conv_gradients():
    rng = np.random.default_rng(6)
    for c_in, c_out in [(3, 5), (5, 3)]:  # both branches of the kernel-gradient transpose
        x = rng.normal(size=(2, 4, 3, c_in)).astype(np.float32)
        kernel = rng.normal(size=(c_in, c_out)).astype(np.float32)
        dy = rng.normal(size=(2, 4, 3, c_out))
        dx, dkernel = jax.vjp(pointwise_conv, x, kernel)[1](dy.astype(np.float32))
        np.testing.assert_allclose(dx, dy @ kernel.T.astype(np.float64), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(dkernel, np.einsum("bhwi,bhwo->io", x, dy), rtol=1e-4,
                                   atol=1e-5)


def test_fused_batch_norm_matches_nnx_batch_norm():
    """Outputs, running statistics and gradients equal nnx.BatchNorm's (automatic differentiation),
    in training and eval mode."""
    rng = np.random.default_rng(7)
    x = rng.normal(1.0, 2.0, size=(6, 3, 5)).astype(np.float32)
    weights = rng.normal(size=(6, 3, 5)).astype(np.float32)  # a loss that is not symmetric
    settings = dict(num_features=5, momentum=0.9, epsilon=1e-3)
    fused = FusedBatchNorm(**settings, rngs=nnx.Rngs(0))
    reference = nnx.BatchNorm(**settings, rngs=nnx.Rngs(0))
    scale = rng.uniform(0.5, 2.0, 5).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    for norm in (fused, reference):
        norm.scale[...], norm.bias[...] = scale, bias
    gradients = []
    for norm in (fused, reference):
        loss = lambda norm, x: jnp.sum(jnp.sin(norm(x)) * weights)
        gradients.append(nnx.grad(loss, argnums=(0, 1))(norm, x))
    (fused_params, fused_dx), (reference_params, reference_dx) = gradients
    np.testing.assert_allclose(fused_dx, reference_dx, rtol=1e-4, atol=1e-5)
    for name in ("scale", "bias"):
        np.testing.assert_allclose(fused_params[name][...], reference_params[name][...],
                                   rtol=1e-4, atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(getattr(fused, name)[...], getattr(reference, name)[...],
                                   rtol=1e-6)
    np.testing.assert_allclose(fused(x), reference(x), rtol=1e-5, atol=1e-5)
    fused.eval()
    reference.eval()
    np.testing.assert_allclose(fused(x), reference(x), rtol=1e-5, atol=1e-5)


def test_depthwise_conv_keras_initialization():
    conv_bn = ConvBN(48, 48, "depthwise", bn_momentum=0.999, bn_epsilon=1e-3, rngs=nnx.Rngs(0))
    kernel = np.asarray(conv_bn.conv.kernel[...])
    assert kernel.shape == (3, 3, 1, 48)
    # Keras's glorot_uniform on its depthwise kernel (3, 3, 48, 1): fan_in 9 x 48, fan_out 9.
    limit = np.sqrt(6.0 / (9 * 48 + 9))
    assert limit * 0.9 < np.abs(kernel).max() <= limit


def test_mobilenet_v2_train_and_eval_modes():
    model = random_mobilenet(0.5)
    rng = np.random.default_rng(4)
    stats = jax.tree.map(np.array, nnx.state(model, nnx.BatchStat))  # a copy, not the Variables
    x = rng.normal(size=(2, 32, 32)).astype(np.float32)
    other_batch = np.stack([x[0], -x[1]])
    forward = nnx.jit(lambda model, x: model(x))

    eval_view = nnx.view(model, use_running_average=True)
    logits, embedding = forward(eval_view, x)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model, nnx.BatchStat), stats)
    # Running statistics make each output row independent of the rest of the batch.
    np.testing.assert_allclose(forward(eval_view, other_batch)[1][0], embedding[0],
                               rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(embedding) >= 0) and np.all(np.asarray(embedding) <= 6)  # ReLU6

    forward(model, x)  # training mode (the default) moves every BN's running statistics
    changed = jax.tree.map(lambda new, old: bool(np.any(np.asarray(new) != old)),
                           nnx.state(model, nnx.BatchStat), stats)
    assert all(jax.tree.leaves(changed))


def test_mobilenet_v2_rejects_bad_arguments():
    with pytest.raises(ValueError, match="frames, mels"):
        abstract_mobilenet(0.5)(np.zeros((2, 64, 128, 3), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        MobileNetV2(num_classes=3, alpha=0.0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_classes"):
        MobileNetV2(num_classes=0, rngs=nnx.Rngs(0))


MOBILENET_INPUT = np.random.default_rng(9).normal(size=(3, 33, 20)).astype(np.float32)  # odd


@functools.cache
def mobilenet_outputs_and_gradients(conv_impl: str, dtype: str):
    """Of ``random_mobilenet(0.35, conv_impl=..., dtype=...)`` on ``MOBILENET_INPUT``, training
    mode: ``((logits, embedding), (parameter gradients, input gradient))`` of a fixed linear
    function of the outputs, as numpy; cached (each costs a MobileNetV2 gradient compilation)."""
    model = random_mobilenet(0.35, conv_impl=conv_impl, dtype=dtype)
    rng = np.random.default_rng(11)
    weights = [rng.normal(size=(MOBILENET_INPUT.shape[0], n)).astype(np.float32)
               for n in (model.head.dense.out_features, model.embedding_dim)]

    def loss(model, x):
        outputs = model(x)
        return sum(jnp.sum(out * w) for out, w in zip(outputs, weights)), outputs

    (_, outputs), grads = nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        model, MOBILENET_INPUT)
    return jax.tree.map(np.asarray, (outputs, grads))


def test_mobilenet_v2_forward_and_gradients_agree_across_conv_impls():
    tuned, native = [mobilenet_outputs_and_gradients(impl, "float32")
                     for impl in ("cpu_tuned", "native")]
    # Single layers agree to 1e-5 (tests above); 17 blocks of BatchNorm over a batch of 3 amplify
    # float32 rounding to ~2e-4 of an array's largest value. Gradients that are zero in exact
    # arithmetic (the bias of a BN that feeds only another BN) hold rounding noise alone, so the
    # absolute tolerance has a floor at the median array's scale.
    scales = [np.abs(leaf).max() for leaf in jax.tree.leaves(native)]
    floor = np.median(scales)
    for got, expected, scale in zip(jax.tree.leaves(tuned), jax.tree.leaves(native), scales):
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * max(scale, floor))


def relative_error(got, expected) -> float:
    return float(np.linalg.norm(np.asarray(got, np.float64) - expected) / np.linalg.norm(expected))


def test_mobilenet_v2_bfloat16_computation():
    """bfloat16 convolutions: eval-mode outputs near float32's (training-mode BN over a tiny batch
    amplifies any rounding, float32's own included, several times per block), float32
    parameters, BN statistics and outputs; every convolution and matmul of the forward pass in
    bfloat16 but the head's, which stays float32 (the margin losses' cosines need it)."""
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        model = random_mobilenet(0.35, dtype=dtype)
        model.eval()
        outputs[dtype] = nnx.jit(lambda model, x: model(x))(model, MOBILENET_INPUT)
    for got, expected in zip(outputs["bfloat16"], outputs["float32"]):
        assert got.dtype == np.float32
        assert relative_error(got, expected) < 0.05
    for kind in (nnx.Param, nnx.BatchStat):
        assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, kind))} == {np.dtype(np.float32)}
    jaxpr = str(jax.make_jaxpr(lambda x: model(x))(MOBILENET_INPUT))
    products = [line for line in jaxpr.splitlines()
                if "dot_general[" in line or "conv_general_dilated[" in line]
    head = [line for line in products if f",{model.head.dense.out_features}] = dot_general" in line]
    assert len(head) == 1 and "f32[" in head[0].split("=")[0]
    assert len(products) > 1 and all("bf16[" in line.split("=")[0] for line in products if line not in head)


def test_autoencoder_bfloat16_computation():
    """bfloat16 Dense layers: training-mode and eval-mode reconstructions, code and gradients
    near float32's; parameters, BN statistics and outputs float32."""
    x = np.random.default_rng(12).normal(size=(32, 640)).astype(np.float32)
    results = {}
    for dtype in ("float32", "bfloat16"):
        model = AutoEncoder(dtype=dtype, rngs=nnx.Rngs(0))
        loss = lambda model, x: jnp.mean(jnp.square(model(x) - x))
        grads = jax.tree.leaves(nnx.grad(loss)(model, x))
        outputs = [model(x), model.encode(x)]
        for kind in (nnx.Param, nnx.BatchStat):
            assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, kind))} == {
                np.dtype(np.float32)}
        model.eval()
        outputs.append(model(x))
        results[dtype] = outputs, np.concatenate([np.ravel(g) for g in grads])
        assert all(array.dtype == np.float32 for array in jax.tree.leaves(results[dtype]))
    for got, expected in zip(results["bfloat16"][0], results["float32"][0]):
        assert relative_error(got, expected) < 0.05
    # Gradients, as one vector: BN's backward pass subtracts each channel's mean and scale
    # directions from a bfloat16-rounded output gradient, a cancellation that leaves them ~30 %
    # off in norm (measured), but pointing the same way.
    got, expected = results["bfloat16"][1], results["float32"][1]
    assert got @ expected / np.linalg.norm(got) / np.linalg.norm(expected) > 0.9
    jaxpr = str(jax.make_jaxpr(lambda x: model(x))(x))
    assert jaxpr.count("bf16[32,128] = dot_general") == 8 and "bf16[32,640] = dot_general" in jaxpr


def test_computation_dtype_must_be_floating():
    assert compute_dtype("bfloat16") == jnp.bfloat16
    for bad in ("int32", "float33"):
        with pytest.raises(ValueError, match="computation dtype"):
            AutoEncoder(dtype=bad, rngs=nnx.Rngs(0))


# ----------------------------------------------------------------------------- registry

def test_registry():
    model = nnx.eval_shape(lambda: create_model("mobilenet_v2", nnx.Rngs(0), num_classes=4,
                                                 alpha=1.0))
    assert isinstance(model, MobileNetV2) and model.head.dense.out_features == 4
    with pytest.raises(ValueError, match="known models"):
        create_model("resnet", nnx.Rngs(0))
    with pytest.raises(ValueError, match="hiden_dim"):
        create_model("autoencoder", nnx.Rngs(0), hiden_dim=64)
