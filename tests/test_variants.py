"""Every variant builds in every backend with the analytic shapes and parameter counts, and the backends agree."""

import numpy as np
import pytest

from nin_common.arch import reference, shapes
from nin_common.arch import spec as S
from nin_common.arch.variants import VARIANTS, VGG_STAGES, build_spec, default_input, describe
from conftest import pool_oracle, shape_in, to_layout


def size_for(spec: S.NetSpec) -> int:
    """The smallest size whose last maps are at least 2x2, so that averaging and flatten order matter."""
    for size in range(shapes.min_image_size(spec), 512):
        maps = [f for l, f in zip(spec.layers, shapes.feature_shapes(spec, size)) if isinstance(l, S.Block)]
        if min(maps[-1][1:]) >= 2:
            return size
    raise AssertionError("no test size")




def build(backend, variant, **kw):
    in_channels, _ = default_input(variant)
    spec = build_spec(variant, 10, in_channels)
    size = kw.pop("image_size", size_for(spec))
    return backend.NiN(variant=variant, in_channels=in_channels, image_size=size, **kw), in_channels, size


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_shapes_and_params_match_analytic(backend, variant):
    model, in_channels, size = build(backend, variant, seed=0)
    input_shape = shape_in(backend.DATA_FORMAT, 1, in_channels, size)
    measured = backend.layer_shapes(model, input_shape)
    analytic = shapes.layer_shapes(model.spec, input_shape, backend.DATA_FORMAT)
    assert [s for _, s in measured] == [s for _, s in analytic]
    assert len(measured) == len(model.spec.layers)
    assert backend.num_params(model) == shapes.num_params(model.spec, size)
    assert sorted(backend.export_weights(model)) == sorted(shapes.param_shapes(model.spec, size))


def float32_tolerance(spec: S.NetSpec, size: int) -> float:
    """The error, relative to max|logit|, that a correct float32 forward pass may have against the float64 one.

    Each convolution or dense layer sums K products; rounded in float32 (unit roundoff u = 2**-24), the sum's
    error grows like sqrt(K) * u when the roundings have random signs (Higham, "Accuracy and Stability of
    Numerical Algorithms", 2nd ed., section 3.1, the probabilistic bound), relative to the sum of the terms'
    magnitudes, which a ReLU network's outputs are of the order of.  The layers' errors add up along the depth
    L.  So L * sqrt(K_max) * u: a 19-convolution VGG-style stack gets a larger tolerance than the chapter's
    12 convolutions, from its own shape, whatever CPU kernels compute it.
    """
    fan_ins, channels, previous = [], spec.in_channels, (spec.in_channels, size, size)
    for layer, feature in zip(spec.layers, shapes.feature_shapes(spec, size)):
        if isinstance(layer, S.Block):
            for conv in layer.convs:
                fan_ins.append(conv.kernel_size ** 2 * channels)
                channels = conv.out_channels
        elif isinstance(layer, S.Dense):
            fan_ins.append(int(np.prod(previous)))
        previous = feature
    return len(fan_ins) * np.sqrt(max(fan_ins)) * 2.0 ** -24


def test_float32_tolerance_grows_with_depth_and_width():
    chapter = build_spec("chapter", 10, 1)
    assert float32_tolerance(chapter, 224) == 12 * np.sqrt(3 * 3 * 384) * 2.0 ** -24  # 3x3 over 384 maps
    assert float32_tolerance(build_spec("nin-vgg19", 10, 1), 224) > float32_tolerance(chapter, 224)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_forward_parity_across_backends(all_backends, variant):
    """Each backend in float32 against the float64 reference (so a pair of backends may differ by twice this)."""
    in_channels, _ = default_input(variant)
    spec = build_spec(variant, 10, in_channels)
    size = size_for(spec)
    x = np.random.default_rng(1).random((2, in_channels, size, size), dtype=np.float32)
    tol = float32_tolerance(spec, size)
    for mod in all_backends:
        model, _, _ = build(mod, variant, seed=7, init="kaiming")
        expected = reference.forward(spec, mod.export_weights(model), x.astype(np.float64))
        got = mod.predict(model, to_layout(x, mod.DATA_FORMAT))
        assert got.shape == expected.shape == (2, 10)
        scale = np.abs(expected).max()
        assert scale > 0, f"{variant} gives all-zero logits: the comparison would be empty"
        worst = np.abs(got - expected).max() / scale  # element-wise absolute differences, relative to max|logit|
        assert worst <= tol, f"{variant}: {mod.BACKEND} vs float64 reference differ by {worst:.2e} > {tol:.2e}"


def test_ceil_pool_rounds_up_in_every_backend(backend):
    """Caffe's ImageNet NiN: 54 -> 27 -> 13 -> 6 at 224, where the chapter's floor gives 26, 12, 5."""
    spatial = {}
    for variant in ("ceil-pool", "chapter"):
        model = backend.NiN(variant=variant, seed=0)
        rows = backend.layer_shapes(model, shape_in(backend.DATA_FORMAT, 1, 1, 224))
        h_axis = 2 if backend.DATA_FORMAT == "NCHW" else 1
        spatial[variant] = [shape[h_axis] for _, shape in rows[:6]]
    assert spatial["ceil-pool"] == [54, 27, 27, 13, 13, 6]
    assert spatial["chapter"] == [54, 26, 26, 12, 12, 5]


def test_cifar10_network_at_its_own_input(backend):
    """The paper's CIFAR-10 net on 32x32x3: 96 maps at 32, pooled to 16 and 8 (rounding up), 10 at the end."""
    model = backend.NiN(variant="cifar10", in_channels=3, image_size=32, seed=0)
    rows = backend.layer_shapes(model, shape_in(backend.DATA_FORMAT, 4, 3, 32))
    expected = [(96, 32), (96, 16), (96, 16), (192, 16), (192, 8), (192, 8), (10, 8)]
    assert [s for _, s in rows[:7]] == [shape_in(backend.DATA_FORMAT, 4, c, h) for c, h in expected]
    assert rows[-1][1] == (4, 10)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("ceil_mode", [True, False])
def test_pooling_matches_reference(backend, monkeypatch, kind, ceil_mode):
    """An identity 1x1 convolution, then the pooling layer: the values must be the written-out pooling's."""
    pool = (S.MaxPool if kind == "max" else S.AvgPool)(3, 2, ceil_mode)
    monkeypatch.setitem(VARIANTS, "probe", lambda num_classes, in_channels: S.NetSpec(
        in_channels, (S.Block((S.Conv(in_channels, 1),)), pool, S.Flatten()), name="probe"))
    model = backend.NiN(variant="probe", in_channels=2, image_size=10, seed=0)
    backend.import_weights(model, {"block0.conv0.weight": np.eye(2, dtype=np.float32).reshape(2, 2, 1, 1),
                                   "block0.conv0.bias": np.zeros(2, np.float32)})
    x = np.random.default_rng(2).random((3, 2, 10, 10), dtype=np.float32) + 0.1  # positive: ReLU is identity
    expected = pool_oracle(x, kind, 3, 2, ceil_mode)
    out = backend.predict(model, to_layout(x, backend.DATA_FORMAT))
    side = expected.shape[2]
    got = out.reshape(shape_in(backend.DATA_FORMAT, 3, 2, side))
    if backend.DATA_FORMAT == "NHWC":
        got = got.transpose(0, 3, 1, 2)
    assert side == (5 if ceil_mode else 4)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_fc_head_is_built_for_one_size(backend):
    model = backend.NiN(variant="fc-head", image_size=99, seed=0)
    with pytest.raises(ValueError, match="fully connected head was built for that size"):
        backend.predict(model, np.zeros(shape_in(backend.DATA_FORMAT, 1, 1, 131), np.float32))


def convs(spec):
    return [conv for block in spec.blocks for conv in block.convs]


def test_exercise_variants_change_what_they_say():
    chapter = build_spec("chapter")
    for k in (0, 1, 3):  # exercise 1
        spec = build_spec(f"1x1-{k}")
        assert [len(b.convs) for b in spec.blocks] == [1 + k] * 4
        assert all(c.kernel_size == 1 for b in spec.blocks for c in b.convs[1:])
    assert [len(b.convs) for b in chapter.blocks] == [3] * 4
    three = build_spec("3x3")  # exercise 2: same first convolutions, 3x3 padding-1 instead of 1x1
    assert [b.convs[0] for b in three.blocks] == [b.convs[0] for b in chapter.blocks]
    assert all((c.kernel_size, c.padding) == (3, 1) for b in three.blocks for c in b.convs[1:])
    head = build_spec("fc-head")  # exercise 3
    assert not any(isinstance(l, S.GlobalAvgPool) for l in head.layers)
    assert shapes.param_shapes(head, 224)["dense0.weight"] == (10, 10 * 5 * 5)
    assert shapes.param_shapes(build_spec("fc-head-wide"), 224)["dense0.weight"] == (10, 384 * 5 * 5)
    assert [c.out_channels for c in build_spec("gradual").blocks[-1].convs] == [192, 96, 10]  # exercise 5
    assert [c.out_channels for c in build_spec("gradual", num_classes=200).blocks[-1].convs] == [200, 200, 200]
    for depth, stages in VGG_STAGES.items():  # exercise 6
        spec = build_spec(f"nin-vgg{depth}")
        assert len(spec.blocks) == sum(stages) + 1
        assert len(convs(spec)) == 3 * (sum(stages) + 1)
        assert sum(isinstance(l, S.MaxPool) for l in spec.layers) == 5
    assert len(convs(build_spec("nin-vgg11"))) < len(convs(build_spec("nin-vgg16"))) < len(
        convs(build_spec("nin-vgg19")))


def test_cifar10_spec_is_the_papers():
    spec = build_spec("cifar10", 10, 3)
    assert [[c.out_channels for c in b.convs] for b in spec.blocks] == [[192, 160, 96], [192, 192, 192],
                                                                        [192, 192, 10]]
    assert [b.convs[0].kernel_size for b in spec.blocks] == [5, 5, 3]
    pools = [l for l in spec.layers if isinstance(l, (S.MaxPool, S.AvgPool))]
    assert [type(p).__name__ for p in pools] == ["MaxPool", "AvgPool"] and all(p.ceil_mode for p in pools)
    assert sum(isinstance(l, S.Dropout) for l in spec.layers) == 2
    assert default_input("cifar10") == (3, 32) and default_input("chapter") == (1, 224)


def test_every_variant_is_described_and_unknown_names_fail():
    for name in VARIANTS:
        assert describe(name) and build_spec(name).name == name
    with pytest.raises(ValueError, match="expected variant to be one of chapter, 1x1-0"):
        build_spec("vgg")
