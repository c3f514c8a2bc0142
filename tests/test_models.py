"""Tests for mdg.models: parameter counts, shapes, BatchNorm modes, padding, init, registry."""
import functools

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from mdg.models import AutoEncoder, MobileNetV2, create_model
from mdg.models.layers import FusedBatchNorm, depthwise_conv, pointwise_conv
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
def abstract_mobilenet(alpha: float, in_channels: int = 1, num_classes: int = 7) -> MobileNetV2:
    """Shapes-only model (no initializer runs), cached across tests; treat as read-only."""
    return nnx.eval_shape(lambda: MobileNetV2(num_classes, alpha=alpha, in_channels=in_channels,
                                              rngs=nnx.Rngs(0)))


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


@pytest.mark.parametrize("height,width,stride", [(8, 8, 1), (8, 6, 2), (7, 9, 2), (5, 3, 1),
                                                 (1, 2, 2)])
def test_depthwise_conv_and_gradients_match_xla_grouped_conv(height, width, stride):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, height, width, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 1, 3)).astype(np.float32)

    def reference(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            feature_group_count=3)

    out, vjp = jax.vjp(lambda x, k: depthwise_conv(x, k, stride), x, kernel)
    expected, reference_vjp = jax.vjp(reference, x, kernel)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    dy = rng.normal(size=out.shape).astype(np.float32)
    for grad, expected_grad in zip(vjp(dy), reference_vjp(dy)):
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-4)


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
    # Random values in place of the initializers: building the real init is slow on CPU and
    # this test is about BatchNorm modes, not initialization.
    graphdef, params, stats = nnx.split(abstract_mobilenet(0.5), nnx.Param, nnx.BatchStat)
    rng = np.random.default_rng(4)
    params = jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(s.dtype), params)
    stats = jax.tree.map(lambda s: np.ones(s.shape, s.dtype), stats)  # any valid mean and var
    model = nnx.merge(graphdef, params, stats)
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


# ----------------------------------------------------------------------------- registry

def test_registry():
    model = nnx.eval_shape(lambda: create_model("mobilenet_v2", nnx.Rngs(0), num_classes=4,
                                                 alpha=1.0))
    assert isinstance(model, MobileNetV2) and model.head.dense.out_features == 4
    with pytest.raises(ValueError, match="known models"):
        create_model("resnet", nnx.Rngs(0))
    with pytest.raises(ValueError, match="hiden_dim"):
        create_model("autoencoder", nnx.Rngs(0), hiden_dim=64)
