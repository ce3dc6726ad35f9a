"""The numpy twins of the torch pre- and post-processing (numpy_images, numpy_keypoints), held to
the torch code they replace in the torch-free OpenVINO detector: grey pixels, keypoints and
scores bit for bit, descriptors to float rounding."""

import numpy as np
import pytest
import torch

from superpoint_ros import images, keypoints, numpy_images, numpy_keypoints
from superpoint_ros.feature_types import MAGICLEAP, MIT, DetectionSettings

from helpers import CONFIGURATIONS

CPU = torch.device("cpu")
ROUNDING = 1e-6
"""Descriptor rows are unit vectors; their sums run in another order than torch's (a few ulps)."""


def score_maps(seed: int, batch: int = 2, height: int = 96, width: int = 128) -> np.ndarray:
    """Random scores with a plateau (exact ties, which NMS and the stable sort must settle alike),
    and zeros and a bright border, as a sharp network gives them."""
    rng = np.random.default_rng(seed)
    scores = rng.random((batch, height, width), dtype=np.float32) ** 6
    scores[:, 40:43, 50:53] = np.float32(0.75)
    scores[:, :3] = np.float32(0.9)
    scores[:, 60:70, 10:30] = 0
    return scores


def descriptor_maps(seed: int, batch: int = 2, height: int = 96, width: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed + 100)
    return rng.standard_normal((batch, height // 8, width // 8, 256), dtype=np.float32)


@pytest.mark.parametrize("architecture", [MAGICLEAP, MIT])
@pytest.mark.parametrize("settings", CONFIGURATIONS, ids=str)
def test_postprocessing_gives_the_torch_keypoints_and_scores_exactly(settings, architecture):
    scores, maps = score_maps(1), descriptor_maps(1)
    torch_maps = torch.from_numpy(maps).permute(0, 3, 1, 2)  # channels last, as OpenVINO hands it over
    size = scores.shape[-2:]
    expected = keypoints.postprocess(
        torch.from_numpy(scores), torch_maps, settings, size, size, architecture=architecture
    )
    expected_keypoints, expected_scores, expected_descriptors, counts = expected
    found = numpy_keypoints.postprocess(scores, maps, settings, architecture)
    assert len(found) == 2
    for image, (found_keypoints, found_scores, found_descriptors) in enumerate(found):
        count = int(counts[image])
        assert count > 0
        np.testing.assert_array_equal(found_keypoints, expected_keypoints[image, :count].numpy())
        np.testing.assert_array_equal(found_scores, expected_scores[image, :count].numpy())
        assert found_descriptors.shape == (count, 256) and found_descriptors.dtype == np.float32
        np.testing.assert_allclose(
            found_descriptors, expected_descriptors[image, :count].numpy(), rtol=0, atol=ROUNDING
        )


def test_no_keypoint_gives_empty_arrays_of_the_right_shapes():
    settings = DetectionSettings(keypoint_threshold=0.99)
    (found,) = numpy_keypoints.postprocess(
        np.zeros((1, 32, 40), np.float32), descriptor_maps(0, 1, 32, 40), settings, MIT
    )
    assert [array.shape for array in found] == [(0, 2), (0,), (0, 256)]


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_mit_descriptors_are_the_cells_at_their_centres_and_blend_evenly_between():
    """Hand-computed: the MIT mapping reads cell c at pixel 8c + 3.5, so a keypoint there gets that
    cell's unit vector, and one at 8c + 7.5, between four centres, their even blend."""
    maps = descriptor_maps(3, 1, 32, 48)[0]
    centre = np.array([[8 * 2 + 3.5, 8 * 1 + 3.5]], np.float32)  # cell (row 1, column 2)
    np.testing.assert_allclose(
        numpy_keypoints.sample_descriptors(maps, centre, MIT)[0], unit(maps[1, 2]), atol=ROUNDING
    )
    between = np.array([[8 * 2 + 7.5, 8 * 1 + 7.5]], np.float32)
    blend = maps[1:3, 2:4].sum(axis=(0, 1))
    np.testing.assert_allclose(numpy_keypoints.sample_descriptors(maps, between, MIT)[0], unit(blend), atol=ROUNDING)


def test_magicleap_descriptors_stretch_from_the_first_cell_centre_to_the_last_pixel():
    """Hand-computed: Magic Leap's mapping puts cell 0 at pixel 3.5 and the last cell at the last
    pixel of the covered region (8w − 1), so those read single cells."""
    maps = descriptor_maps(4, 1, 32, 48)[0]
    corners = np.array([[3.5, 3.5], [8 * 6 - 1, 8 * 4 - 1]], np.float32)
    sampled = numpy_keypoints.sample_descriptors(maps, corners, MAGICLEAP)
    np.testing.assert_allclose(sampled, [unit(maps[0, 0]), unit(maps[3, 5])], atol=ROUNDING)


def colour_cases() -> list:
    rng = np.random.default_rng(5)
    grey8 = rng.integers(0, 256, (40, 48), dtype=np.uint8)
    floats = rng.random((40, 48, 3)).astype(np.float32) * 1.4 - 0.2
    floats[3, 4, 1] = np.nan
    floats[5, 6, 0] = np.inf
    return [
        pytest.param([rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(2)], id="bgr8"),
        pytest.param([rng.integers(0, 65536, (40, 48, 3), dtype=np.uint16)], id="bgr16"),
        pytest.param([np.dstack([grey8] * 3), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)], id="grey-as-bgr"),
        pytest.param([rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)], id="bgra8"),
        pytest.param([grey8, grey8[::-1].copy()], id="mono8"),
        pytest.param([grey8[..., None]], id="mono8-one-channel"),
        pytest.param([floats, floats.astype(np.float64)[:, ::-1].astype(np.float32)], id="float32-nan-inf"),
        pytest.param([floats.astype(np.float64)], id="float64"),
    ]


@pytest.mark.parametrize("architecture", [MAGICLEAP, MIT])
@pytest.mark.parametrize("channel_order", ["bgr", "rgb"])
@pytest.mark.parametrize("frames", colour_cases())
def test_grey_conversion_is_bit_identical_to_torchs(frames, channel_order, architecture):
    expected = images.to_grey_batch(frames, CPU, channel_order, architecture).numpy()
    found = numpy_images.to_grey_array(frames, channel_order, architecture)
    assert found.dtype == np.float32 and found.shape == expected.shape
    np.testing.assert_array_equal(found, expected)


def test_an_unknown_channel_order_is_refused():
    with pytest.raises(ValueError, match="channel_order must be one of"):
        numpy_images.to_grey_array([np.zeros((8, 8, 3), np.uint8)], "bgra")
