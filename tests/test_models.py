import numpy as np
import pytest

import minifrrn as mf
from minifrrn.models import FRRU, ResidualUnit, build_model, frrn_a, frrn_b, frrn_tiny


def test_parameter_counts_match_the_paper():
    # the published models' counts for 19 classes (recounted by hand from the architecture's layer
    # list): A 17,746,803 and B 24,755,699 trainable, 15,520 / 20,128 batch-norm buffer values
    a, b = frrn_a(), frrn_b()
    assert a.num_parameters() == 17_746_803 and a.num_buffer_values() == 15_520
    assert b.num_parameters() == 24_755_699 and b.num_buffer_values() == 20_128
    assert frrn_a(num_classes=21).num_parameters() == 17_746_803 + 49 * 2
    assert frrn_b(num_classes=18).num_parameters() == 24_755_699 - 49


@pytest.mark.parametrize("builder,size", [(frrn_a, 32), (frrn_b, 32), (frrn_tiny, 16)])
def test_output_shape_and_residual_stream_stays_full_resolution(builder, size):
    model = builder(num_classes=5).eval()
    x = mf.tensor(np.random.default_rng(0).random((1, 3, size, 2 * size)).astype(np.float32))
    with mf.no_grad():
        logits, streams = model(x, return_streams=True)
    assert logits.shape == (1, 5, size, 2 * size)
    zc = model.to_residual_stream[0].out_channels
    for _, z in streams:
        assert z.shape == (1, zc, size, 2 * size)
    if builder is not frrn_tiny:
        assert zc == 32


@pytest.mark.parametrize("builder,bad,factor", [(frrn_a, (40, 64), 16), (frrn_b, (64, 48), 32),
                                                (frrn_tiny, (12, 16), 8)])
def test_sizes_not_divisible_by_the_deepest_pooling_are_rejected(builder, bad, factor):
    model = builder()
    with pytest.raises(ValueError, match=f"not divisible by {factor}"):
        model(mf.tensor(np.zeros((1, 3) + bad, np.float32)))


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match="expects 3"):
        frrn_tiny()(mf.tensor(np.zeros((1, 1, 16, 16), np.float32)))


def test_frrus_chain_along_y():
    # each unit's y' feeds the next: the second FRRU of a stage takes c channels, not the stage input
    model = frrn_a()
    first, second = model.encoder[1][0], model.encoder[1][1]
    assert first.y_channels_in == 96 and second.y_channels_in == 192


def test_residual_unit_projection_only_when_widths_differ():
    assert ResidualUnit(8, 8).projection is None
    ru = ResidualUnit(8, 4)
    assert ru.projection.weight.shape == (4, 8, 1, 1) and ru.projection.bias is None


def test_frru_shapes():
    unit = FRRU(4, 6, 5, z_channels=3)
    y, z = unit(mf.tensor(np.ones((2, 5, 2, 3), np.float32)),
                mf.tensor(np.random.default_rng(1).random((2, 3, 8, 12)).astype(np.float32)))
    assert y.shape == (2, 6, 2, 3) and z.shape == (2, 3, 8, 12)


def test_seeded_models_are_reproducible():
    a, b = frrn_tiny(seed=3), frrn_tiny(seed=3)
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_summary_lists_stages_and_counts():
    text = frrn_a().summary((256, 512))
    assert "17,746,803" in text and "384x16x32" in text and "32x256x512" in text


def test_build_model_names():
    assert build_model("tiny").name == "frrn_tiny"
    with pytest.raises(ValueError, match="unknown model 'frrn_c'"):
        build_model("frrn_c")


def test_he_uniform_bounds():
    model = frrn_tiny(seed=0)
    conv = model.stem[0][0]  # 5x5 conv followed by a ReLU: bound sqrt(3)*sqrt(2)/sqrt(3*25)
    bound = np.sqrt(3) * np.sqrt(2) / np.sqrt(3 * 25)
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.9 * bound
    assert not model.classifier.bias.data.any()


@pytest.mark.parametrize("size,advice", [((12, 20), "use height 8 or 16 and width 16 or 24"),
                                         ((6, 16), "use height 8 and width 16")])
def test_the_size_error_suggests_sizes_that_work(size, advice):
    with pytest.raises(ValueError, match=advice):
        frrn_tiny()(mf.tensor(np.zeros((1, 3) + size, np.float32)))


def test_frrn_refuses_a_spec_it_cannot_build_naming_the_argument():
    from minifrrn.models import FRRN
    with pytest.raises(ValueError, match="frrn_tiny: num_classes must be an integer >= 2, got 0"):
        mf.models.frrn_tiny(num_classes=0)
    with pytest.raises(ValueError, match="encoder and decoder need at least one stage each"):
        FRRN(decoder=[])
