"""The MIT-licensed SuperPoint (rpautrat/SuperPoint): its layers against hand and numpy
arithmetic, its descriptor sampling against a hand bilinear interpolation, the whole torch
pipeline against the reference's arithmetic restated with stock layers (`mit_weights`), and
the loader's recognition of its files and its errors. The other engines: test_mit_engines.py.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from superpoint_ros import export
from superpoint_ros.detector import DetectionSettings, Detector
from superpoint_ros.images import to_grey_batch
from superpoint_ros.keypoints import sample_descriptors
from superpoint_ros.model import SuperPoint, cell_probabilities_to_scores
from superpoint_ros.model_mit import MitSuperPoint, VggBlock
from superpoint_ros.weights import WeightsError, load_model

from conftest import structured_image
from mit_weights import BATCH_NORM_EPS, random_mit_state_dict, reference_pipeline, write_mit_pth

CPU = torch.device("cpu")


def block_with(weight, bias, gamma, beta, mean, var, relu: bool = True) -> VggBlock:
    out_channels, in_channels, kernel_size, _ = weight.shape
    block = VggBlock(in_channels, out_channels, kernel_size, relu=relu)
    tensors = {
        "conv.weight": weight,
        "conv.bias": bias,
        "bn.weight": gamma,
        "bn.bias": beta,
        "bn.running_mean": mean,
        "bn.running_var": var,
    }
    block.load_state_dict({name: torch.as_tensor(np.asarray(value, np.float32)) for name, value in tensors.items()})
    return block.eval()


def test_one_vgg_block_on_a_tiny_input_gives_the_hand_computed_values():
    # A 3×3 image of ones through a 3×3 kernel of ones with zero padding sums 4 pixels at a
    # corner, 6 on an edge, 9 in the centre. BatchNorm then: (v − 1) / √(3.999 + 0.001) · (−1) + 0.5.
    # The negative gamma tells "ReLU then BatchNorm" from the other order (which would give 0 here),
    # and eps 1e-5 instead of 1e-3 would move every value by about 1e-4.
    block = block_with(np.ones((1, 1, 3, 3)), [0.0], [-1.0], [0.5], [1.0], [3.999])
    with torch.no_grad():
        output = block(torch.ones(1, 1, 3, 3))[0, 0].numpy()
    expected = np.array([[-1.0, -2.0, -1.0], [-2.0, -3.5, -2.0], [-1.0, -2.0, -1.0]])
    np.testing.assert_allclose(output, expected, rtol=0, atol=1e-6)


def numpy_vgg_block(image, weight, bias, gamma, beta, mean, var, relu: bool) -> np.ndarray:
    """Convolution by its definition (zero padding, cross-correlation), ReLU, BatchNorm; float64."""
    out_channels, in_channels, kernel_size, _ = weight.shape
    pad = kernel_size // 2
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    _, height, width = image.shape
    output = np.empty((out_channels, height, width))
    for o in range(out_channels):
        for y in range(height):
            for x in range(width):
                window = padded[:, y : y + kernel_size, x : x + kernel_size]
                output[o, y, x] = bias[o] + np.sum(weight[o] * window)
    if relu:
        output = np.maximum(output, 0)
    shape = (-1, 1, 1)
    return (output - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + BATCH_NORM_EPS) * gamma.reshape(
        shape
    ) + beta.reshape(shape)


@pytest.mark.parametrize("kernel_size, relu", [(3, True), (1, False)], ids=["3x3 with ReLU", "1x1 head end"])
def test_a_random_vgg_block_matches_numpy(kernel_size, relu):
    rng = np.random.default_rng(3)
    image = rng.normal(size=(2, 5, 6))
    weight = rng.normal(size=(3, 2, kernel_size, kernel_size))
    parameters = [rng.normal(size=3), rng.uniform(-1.5, 1.5, 3), rng.normal(size=3), rng.normal(size=3)]
    var = rng.uniform(0.1, 2.0, 3)
    bias, gamma, beta, mean = parameters
    block = block_with(weight, bias, gamma, beta, mean, var, relu=relu)
    with torch.no_grad():
        output = block(torch.from_numpy(image.astype(np.float32))[None])[0].numpy()
    expected = numpy_vgg_block(
        image.astype(np.float32).astype(np.float64),
        weight.astype(np.float32),
        bias.astype(np.float32),
        gamma.astype(np.float32),
        beta.astype(np.float32),
        mean.astype(np.float32),
        var.astype(np.float32),
        relu,
    )
    np.testing.assert_allclose(output, expected, rtol=0, atol=2e-5)


def test_cell_channel_8i_plus_j_lands_on_row_i_column_j_of_its_cell():
    logits = torch.zeros(1, 65, 2, 3)
    logits[0, 8 * 2 + 5, 1, 2] = 10.0  # cell row 1, column 2 → pixel y = 8 + 2, x = 16 + 5
    scores = cell_probabilities_to_scores(logits)[0]
    assert scores.shape == (16, 24)
    assert divmod(int(scores.argmax()), 24) == (10, 21)
    np.testing.assert_allclose(float(scores[10, 21]), np.exp(10) / (np.exp(10) + 64), rtol=1e-6)


def hand_bilinear(descriptor_map: np.ndarray, x: float, y: float) -> np.ndarray:
    """rpautrat's convention by hand: cell coordinate (p + 0.5) / 8 − 0.5, bilinear between the
    four neighbouring cells, zero outside the map; then unit length."""
    depth, cells_high, cells_wide = descriptor_map.shape
    column, row = (x + 0.5) / 8 - 0.5, (y + 0.5) / 8 - 0.5
    left, top = int(np.floor(column)), int(np.floor(row))
    value = np.zeros(depth)
    for cell_row, weight_row in ((top, 1 - (row - top)), (top + 1, row - top)):
        for cell_column, weight_column in ((left, 1 - (column - left)), (left + 1, column - left)):
            if 0 <= cell_row < cells_high and 0 <= cell_column < cells_wide:
                value += weight_row * weight_column * descriptor_map[:, cell_row, cell_column]
    return value / np.linalg.norm(value)


def test_mit_descriptor_sampling_matches_a_hand_bilinear_interpolation_at_known_positions():
    rng = np.random.default_rng(5)
    descriptor_map = rng.normal(size=(4, 3, 5))
    positions = [(3.5, 3.5), (11.5, 19.5), (7.5, 3.5), (4.0, 12.25), (0.0, 0.0), (39.0, 23.0), (17.0, 9.0)]
    keypoints = torch.tensor([positions], dtype=torch.float32)
    sampled = sample_descriptors(torch.from_numpy(descriptor_map.astype(np.float32))[None], keypoints, "mit")[0]
    for row, (x, y) in enumerate(positions):
        np.testing.assert_allclose(sampled[row].numpy(), hand_bilinear(descriptor_map, x, y), rtol=0, atol=1e-6)
    # A cell's centre reads that cell alone; halfway between two centres reads their mean.
    cell = descriptor_map[:, 2, 1]
    np.testing.assert_allclose(sampled[1].numpy(), cell / np.linalg.norm(cell), atol=1e-6)
    middle = descriptor_map[:, 0, 0] + descriptor_map[:, 0, 1]
    np.testing.assert_allclose(sampled[2].numpy(), middle / np.linalg.norm(middle), atol=1e-6)
    # Magic Leap's convention scales differently, so between the centres the two differ.
    magicleap = sample_descriptors(torch.from_numpy(descriptor_map.astype(np.float32))[None], keypoints)[0]
    assert np.abs(magicleap[6].numpy() - sampled[6].numpy()).max() > 1e-2


def test_mit_grey_is_the_weighted_sum_of_rgb_even_when_the_channels_are_equal():
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (9, 10, 3), dtype=np.uint8)
    image[0] = 77  # equal channels: Magic Leap's conversion passes them through, the MIT one still weighs
    grey = to_grey_batch([image], CPU, "bgr", "mit")[0, 0].numpy()
    blue, green, red = (image[..., channel].astype(np.float32) / np.float32(255) for channel in range(3))
    expected = red * np.float32(0.299) + green * np.float32(0.587) + blue * np.float32(0.114)
    np.testing.assert_array_equal(grey, expected)


@pytest.fixture(scope="module")
def mit_pth(tmp_path_factory):
    return write_mit_pth(tmp_path_factory.mktemp("mit") / "superpoint_v6_from_tf.pth", seed=4, score_head_scale=4.0)


SETTINGS = [
    DetectionSettings(0.005, 4, -1, 4),
    DetectionSettings(0.0, 1, -1, 0),
    DetectionSettings(0.02, 2, 50, 8),
]


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_the_torch_engine_reproduces_the_reference_arithmetic_bit_for_bit(mit_pth, settings):
    detector = Detector(weights=str(mit_pth), device="cpu", backend="torch", **vars_of(settings))
    assert detector.architecture == "mit"
    images = [structured_image(64, 80, 1), structured_image(64, 80, 2), structured_image(70, 93, 3)]
    tensors = torch.load(mit_pth, weights_only=True)
    arguments = (settings.nms_radius, settings.keypoint_threshold, settings.border_removal_distance)
    expected = [
        *reference_pipeline(tensors, images[:2], *arguments, settings.max_keypoints),
        *reference_pipeline(tensors, images[2:], *arguments, settings.max_keypoints),
    ]
    for ours, theirs in zip(detector.detect(images), expected, strict=True):
        assert len(theirs["keypoints"]) > 10
        rows = {tuple(point): row for row, point in enumerate(theirs["keypoints"].tolist())}
        assert sorted(rows) == sorted(tuple(point) for point in np.rint(ours.keypoints).astype(int).tolist())
        order = [rows[tuple(point)] for point in np.rint(ours.keypoints).astype(int).tolist()]
        np.testing.assert_array_equal(ours.scores, theirs["scores"][order])
        np.testing.assert_array_equal(ours.descriptors, theirs["descriptors"][order])


def vars_of(settings: DetectionSettings) -> dict:
    return {
        "keypoint_threshold": settings.keypoint_threshold,
        "nms_radius": settings.nms_radius,
        "max_keypoints": settings.max_keypoints,
        "border_removal_distance": settings.border_removal_distance,
    }


def assert_holds(model: MitSuperPoint, tensors: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    expected = {name: tensor for name, tensor in tensors.items() if not name.endswith("num_batches_tracked")}
    assert sorted(state) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name], tensor), name


def test_the_mit_pth_loads_as_the_mit_network_with_every_tensor_unchanged(mit_pth):
    model = load_model(str(mit_pth))
    assert isinstance(model, MitSuperPoint) and model.architecture_name == "mit"
    assert_holds(model, torch.load(mit_pth, weights_only=True))


def test_a_state_dict_with_batchnorm_counters_and_smaller_widths_loads_too(tmp_path):
    tensors = random_mit_state_dict(6, (8, 8, 16, 16), 32, 24, batch_counter=True)
    assert any(name.endswith("num_batches_tracked") for name in tensors)
    torch.save(tensors, tmp_path / "small.pth")
    model = load_model(str(tmp_path / "small.pth"))
    assert model.descriptor_size == 24 and model.architecture.backbone_sizes == (8, 8, 16, 16)
    assert_holds(model, tensors)


def test_the_export_converter_writes_a_safetensors_file_that_loads_as_the_same_network(mit_pth, tmp_path, capsys):
    converted = tmp_path / "superpoint_v6_from_tf.safetensors"
    assert export.main(["--weights", str(mit_pth), "--safetensors", str(converted)]) == 0
    assert "mit" in capsys.readouterr().out
    # The safetensors library itself reads our file.
    assert_holds(load_model(str(mit_pth)), load_file(converted))
    assert_holds(load_model(str(converted)), torch.load(mit_pth, weights_only=True))


def test_a_file_of_neither_layout_is_one_error_naming_both(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(4, 1, 3, 3)}, path)
    with pytest.raises(WeightsError) as raised:
        load_model(str(path))
    message = str(raised.value)
    assert str(path) in message and "features.0.weight" in message
    assert "encoder.conv_blocks" in message and "conv1a.weight" in message
    assert "backbone.0.0.conv.weight" in message and "rpautrat/SuperPoint" in message


def test_an_architecture_asked_for_that_the_file_does_not_hold_is_refused(mit_pth, hf_weights):
    with pytest.raises(WeightsError, match="holds the mit SuperPoint, but architecture 'magicleap'"):
        load_model(str(mit_pth), architecture="magicleap")
    with pytest.raises(WeightsError, match="holds the magicleap SuperPoint, but architecture 'mit'"):
        load_model(str(hf_weights), architecture="mit")
    with pytest.raises(WeightsError, match="architecture must be one of"):
        load_model(str(mit_pth), architecture="vgg")
    assert isinstance(load_model(str(mit_pth), architecture="mit"), MitSuperPoint)
    assert isinstance(load_model("random", architecture="mit"), MitSuperPoint)
    assert isinstance(load_model("random"), SuperPoint)


def test_a_missing_or_misshaped_mit_tensor_is_named(tmp_path):
    tensors = random_mit_state_dict(7, (8, 8, 16, 16), 32, 24)
    del tensors["descriptor.0.bn.running_var"]
    torch.save(tensors, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"missing descriptor\.0\.bn\.running_var"):
        load_model(str(tmp_path / "missing.pth"))
    tensors = random_mit_state_dict(7, (8, 8, 16, 16), 32, 24)
    tensors["backbone.1.0.bn.weight"] = torch.ones(5)
    torch.save(tensors, tmp_path / "misshaped.pth")
    with pytest.raises(WeightsError, match=r"'backbone\.1\.0\.bn\.weight' has shape \(5,\), expected \(8,\)"):
        load_model(str(tmp_path / "misshaped.pth"))


def test_a_mit_file_whose_cells_are_not_8x8_is_refused(tmp_path):
    tensors = random_mit_state_dict(7, (8, 8, 16), 32, 24)
    torch.save(tensors, tmp_path / "three_stages.pth")
    with pytest.raises(WeightsError, match="3 backbone stages"):
        load_model(str(tmp_path / "three_stages.pth"))
