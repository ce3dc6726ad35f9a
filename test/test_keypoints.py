"""Post-processing on small hand-computed cases."""

import numpy as np
import pytest
import torch
from torch.nn import functional

from superpoint_ros.keypoints import (
    dilate_mask,
    max_filter,
    sample_descriptors,
    select_keypoints,
    select_keypoints_static,
    simple_nms,
)


def grid(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)[None]


def test_nms_keeps_only_the_window_maximum():
    scores = grid(
        [
            [0.1, 0.2, 0.0, 0.0, 0.0],
            [0.0, 0.9, 0.0, 0.0, 0.3],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.5, 0.0],
        ]
    )
    kept = simple_nms(scores, nms_radius=1)
    expected = torch.zeros_like(scores)
    expected[0, 1, 1], expected[0, 1, 4], expected[0, 3, 3] = 0.9, 0.3, 0.5
    assert torch.equal(kept, expected)


def test_nms_radius_zero_keeps_every_pixel():
    scores = torch.rand(2, 6, 7)
    assert torch.equal(simple_nms(scores, 0), scores)


def test_nms_revives_a_maximum_only_shadowed_by_a_suppressed_pixel():
    # 0.8 is suppressed by 0.9; 0.7 lies outside 0.9's window and only 0.8 covered it, so the
    # second round brings 0.7 back (radius 1: windows are 3 wide).
    scores = grid([[0.9, 0.8, 0.7]])
    assert simple_nms(scores, 1).tolist() == [[[0.8999999761581421, 0.0, 0.699999988079071]]]


def test_nms_keeps_both_pixels_of_an_exact_tie():
    # Equal neighbours are each the maximum of their window, so both survive, as in the reference.
    assert simple_nms(grid([[0.0, 0.5, 0.5, 0.0]]), 1).count_nonzero() == 2


def test_negative_radius_is_refused():
    with pytest.raises(ValueError, match="nms_radius"):
        simple_nms(torch.zeros(1, 3, 3), -1)


def test_selection_applies_threshold_border_and_sorts_descending():
    scores = torch.zeros(2, 6, 6)
    scores[0, 0, 0] = 0.99  # on the border
    scores[0, 2, 3] = 0.4
    scores[0, 3, 2] = 0.6
    scores[0, 4, 4] = 0.05  # below the threshold
    scores[1, 5, 5] = 0.99  # bottom-right border
    scores[1, 1, 1] = 0.3
    keypoints, keypoint_scores, counts = select_keypoints(
        scores, keypoint_threshold=0.1, border_removal_distance=1, max_keypoints=-1
    )
    assert counts.tolist() == [2, 1]
    assert keypoints[0].tolist() == [[2.0, 3.0], [3.0, 2.0]]  # (x, y), best first
    assert keypoint_scores[0].tolist() == pytest.approx([0.6, 0.4])
    assert keypoints[1, 0].tolist() == [1.0, 1.0]
    assert keypoint_scores[1, 1] == float("-inf")  # padding after image 1's single keypoint


def test_selection_keeps_the_best_k_and_zero_keeps_none():
    scores = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4) / 16
    keypoints, keypoint_scores, counts = select_keypoints(scores, 0.0, 0, max_keypoints=3)
    assert counts.tolist() == [3]
    assert keypoints[0].tolist() == [[3.0, 3.0], [2.0, 3.0], [1.0, 3.0]]
    _, _, counts = select_keypoints(scores, 0.0, 0, max_keypoints=0)
    assert counts.tolist() == [0]


def test_a_border_wider_than_half_the_image_removes_everything():
    _, _, counts = select_keypoints(torch.ones(1, 8, 8), 0.0, 4, -1)
    assert counts.tolist() == [0]
    _, _, counts = select_keypoints(torch.ones(1, 8, 8), 0.0, 3, -1)
    assert counts.tolist() == [4]


@pytest.mark.parametrize("max_keypoints", [-1, 0, 5, 40])
def test_fixed_capacity_selection_gives_the_dynamic_selection_when_it_has_room(max_keypoints):
    # Distinct scores: the order is unique, so rows must agree exactly.
    scores = simple_nms(torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0)), 1)
    dynamic = select_keypoints(scores, 0.3, 2, max_keypoints)
    room = int(dynamic[2].max()) + 7
    static = select_keypoints_static(scores, 0.3, 2, max_keypoints, capacity=room)
    assert static[0].shape == (3, room, 2) and static[1].shape == (3, room)
    assert torch.equal(static[2], dynamic[2])
    for image, count in enumerate(dynamic[2].tolist()):
        assert torch.equal(static[0][image, :count], dynamic[0][image, :count])
        assert torch.equal(static[1][image, :count], dynamic[1][image, :count])


def test_fixed_capacity_selection_with_tied_scores_keeps_the_same_pixels_and_scores():
    # Scores in steps of 1/8: many exact ties, which topk may order either way.
    scores = torch.randint(0, 8, (2, 16, 16), generator=torch.Generator().manual_seed(1)).float() / 8
    keypoints, keypoint_scores, counts = select_keypoints(scores, 0.2, 1, -1)
    fixed_keypoints, fixed_scores, fixed_counts = select_keypoints_static(scores, 0.2, 1, -1, capacity=256)
    assert torch.equal(fixed_counts, counts)
    for image, count in enumerate(counts.tolist()):
        assert torch.equal(fixed_scores[image, :count], keypoint_scores[image, :count])
        assert set(map(tuple, fixed_keypoints[image, :count].tolist())) == set(
            map(tuple, keypoints[image, :count].tolist())
        )


def test_fixed_capacity_selection_reports_a_count_beyond_its_room():
    scores = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8) / 64
    keypoints, keypoint_scores, counts = select_keypoints_static(scores, 0.0, 0, -1, capacity=4)
    assert counts.tolist() == [63]  # the caller sees 63 > 4 and must retry with more room
    assert keypoints[0].tolist() == [[7.0, 7.0], [6.0, 7.0], [5.0, 7.0], [4.0, 7.0]]
    assert select_keypoints_static(scores, 0.0, 0, -1, capacity=1000)[0].shape == (1, 64, 2)


def random_score_maps(seed: int) -> torch.Tensor:
    """Three maps with coarse values, so that exact ties are common, and a flat zero band."""
    generator = torch.Generator().manual_seed(seed)
    scores = (torch.rand(3, 37, 53, generator=generator) * 20).floor() / 20
    scores[:, :4] = 0
    return scores


@pytest.mark.parametrize("radius", [0, 1, 4, 8, 40])
def test_the_cpu_window_maximum_and_dilation_equal_max_pooling(radius):
    scores = random_score_maps(radius)
    pooled = functional.max_pool2d(scores, kernel_size=2 * radius + 1, stride=1, padding=radius)
    assert torch.equal(max_filter(scores, radius), pooled)
    assert torch.equal(max_filter(scores.double(), radius), pooled.double())
    mask = scores > 0.8
    expected = functional.max_pool2d(mask.float(), kernel_size=2 * radius + 1, stride=1, padding=radius) > 0
    assert torch.equal(dilate_mask(mask, radius), expected)


@pytest.mark.parametrize("max_keypoints", [-1, 0, 7, 10000])
@pytest.mark.parametrize("border", [0, 5])
def test_selection_returns_each_images_best_scores_as_a_full_sort_does(max_keypoints, border):
    scores = random_score_maps(3)
    scores[1] = 0  # an image with nothing to keep, in the middle of the batch
    keypoints, keypoint_scores, counts = select_keypoints(scores, 0.5, border, max_keypoints)
    for image, points, found, count in zip(scores.numpy(), keypoints, keypoint_scores, counts.tolist(), strict=True):
        inner = np.zeros_like(image, dtype=bool)
        inner[border : image.shape[0] - border, border : image.shape[1] - border] = True
        kept = np.sort(image[inner & (image > 0.5)])[::-1]
        if max_keypoints >= 0:
            kept = kept[:max_keypoints]
        assert count == len(kept)
        np.testing.assert_array_equal(found[:count].numpy(), kept)
        x, y = points[:count].long().T
        np.testing.assert_array_equal(image[y, x], kept)  # each keypoint sits on its score
        assert len(set(zip(x.tolist(), y.tolist(), strict=True))) == count


def test_descriptors_are_sampled_where_the_reference_maps_pixels_to_cells():
    # Channel 0 holds the cell column, channel 1 a constant: their ratio after sampling is the
    # interpolated column, whatever the normalisation. The reference maps pixel x to column
    # (x - 3.5) / (8w - 4.5) * (w - 1): pixel 3.5 to column 0 and pixel 8w - 1 to column w - 1.
    cells_wide, cells_high = 4, 3
    descriptor_map = torch.ones(1, 2, cells_high, cells_wide)
    descriptor_map[0, 0] = torch.arange(cells_wide, dtype=torch.float32)
    xs = torch.tensor([3.5, 31.0, 12.0])
    keypoints = torch.stack([xs, torch.full_like(xs, 9.0)], dim=-1)[None]
    sampled = sample_descriptors(descriptor_map, keypoints)[0]
    columns = sampled[:, 0] / sampled[:, 1]
    expected = (xs - 3.5) / (8 * cells_wide - 4.5) * (cells_wide - 1)
    assert columns.tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert columns[:2].tolist() == pytest.approx([0.0, 3.0], abs=1e-6)
    assert torch.linalg.norm(sampled, dim=1).tolist() == pytest.approx([1.0] * 3)


@pytest.mark.parametrize(("batch", "keypoints"), [(1, 1), (1, 700), (3, 64)])
def test_a_channels_last_map_gives_the_same_descriptor_bits(batch, keypoints):
    generator = torch.Generator().manual_seed(batch * keypoints)
    descriptor_map = functional.normalize(torch.randn(batch, 256, 30, 40, generator=generator), dim=1)
    pixels = torch.rand(batch, keypoints, 2, generator=generator) * torch.tensor([319.0, 239.0])
    channels_last = descriptor_map.contiguous(memory_format=torch.channels_last)
    assert channels_last.stride() != descriptor_map.stride()
    assert torch.equal(sample_descriptors(channels_last, pixels), sample_descriptors(descriptor_map, pixels))
