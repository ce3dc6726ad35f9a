"""The tracker core against a synthetic world whose truth is known by construction
(`superpoint_ros.tools.synthetic_world`: the oracle is each keypoint's physical point)."""

import numpy as np
import pytest
import torch

from superpoint_ros import tracking
from superpoint_ros.detector import Detections
from superpoint_ros.tools.synthetic_world import (
    DESCRIPTOR_SIZE,
    MAX_TRACK_GAP,
    OUTLIER,
    World,
    synthetic_world,
    unit_rows,
)
from superpoint_ros.tracking import ID_LIMIT, Tracker, TrackingSettings


def run(tracker: Tracker, world: World) -> list:
    return [tracker.update(frame.detections, stamp=index / 20) for index, frame in enumerate(world.frames)]


def id_owners(world: World, results: list) -> dict[int, set]:
    """Every id, with the physical points it was given to (outliers count one point each)."""
    owners: dict[int, set] = {}
    for index, (frame, tracks) in enumerate(zip(world.frames, results, strict=True)):
        for row, (label, track_id) in enumerate(zip(frame.labels, tracks.ids, strict=True)):
            owners.setdefault(int(track_id), set()).add(int(label) if label != OUTLIER else ("outlier", index, row))
    return owners


def continuations(world: World, results: list, max_gap: int) -> tuple[int, int]:
    """(kept, expected): physical points seen again within `max_gap` missed frames, and how
    many of them kept the id they had when last seen."""
    last_seen: dict[int, tuple[int, int]] = {}
    kept = expected = 0
    for index, (frame, tracks) in enumerate(zip(world.frames, results, strict=True)):
        for label, track_id in zip(frame.labels, tracks.ids, strict=True):
            if label == OUTLIER:
                continue
            if label in last_seen and index - last_seen[label][0] - 1 <= max_gap:
                expected += 1
                kept += last_seen[label][1] == track_id
            last_seen[label] = (index, int(track_id))
    return kept, expected


@pytest.fixture(scope="module")
def world():
    return synthetic_world()


@pytest.fixture(scope="module")
def tracked(world):
    """The world through a tracker with the default settings."""
    return run(Tracker(max_track_gap=MAX_TRACK_GAP), world)


def test_the_synthetic_world_has_motion_occlusion_turnover_and_outliers(world):
    first, last = set(world.frames[0].labels), set(world.frames[-1].labels)
    assert len(first - last) > 50 and len(last - first) > 50, "points leave and enter the view"
    assert world.outliers >= 50
    sizes = [len(frame.labels) for frame in world.frames]
    assert min(sizes) > 150


def test_every_continued_point_keeps_its_id_through_motion_and_an_occlusion_of_max_track_gap_frames(world, tracked):
    results = tracked
    kept, expected = continuations(world, results, MAX_TRACK_GAP)
    assert expected > 3000
    assert kept == expected


def test_no_id_is_ever_given_to_two_physical_points(world, tracked):
    results = tracked
    owners = id_owners(world, results)
    assert all(len(points) == 1 for points in owners.values())


def outlier_lengths(world: World, results: list) -> np.ndarray:
    return np.concatenate(
        [tracks.lengths[frame.labels == OUTLIER] for frame, tracks in zip(world.frames, results, strict=True)]
    )


@pytest.mark.parametrize("verification", ["auto", "fundamental"])
def test_every_outlier_is_rejected_by_verification_and_starts_a_new_track(world, verification):
    # Dense matching, the reference: it offers every outlier to its donor's track, so that
    # verification has to refuse it (guided matching does not even look there).
    results = run(Tracker(max_track_gap=MAX_TRACK_GAP, verification=verification, matching="dense"), world)
    lengths = outlier_lengths(world, results)
    assert len(lengths) == world.outliers
    assert (lengths == 1).all()
    assert sum(tracks.rejected for tracks in results) >= world.outliers


def test_without_verification_the_outliers_take_their_donors_ids(world):
    results = run(Tracker(max_track_gap=MAX_TRACK_GAP, verification="none", matching="dense"), world)
    assert (outlier_lengths(world, results) > 1).mean() > 0.9


def test_with_little_parallax_two_view_verification_still_rejects_most_outliers():
    # 0.12 m a frame at 4–12 m depth: under 10 px of parallax. Many fundamental matrices then fit
    # every true match within 2 px, and RANSAC's choice may fit an outlier too; no two-view
    # test can do better. Measured: 16 of 90 pass (seed 0); without verification 90 of 90.
    world = synthetic_world(step=0.12)
    results = run(Tracker(max_track_gap=MAX_TRACK_GAP, matching="dense"), world)
    kept, expected = continuations(world, results, MAX_TRACK_GAP)
    assert kept == expected
    assert (outlier_lengths(world, results) > 1).mean() <= 0.25


def test_lengths_and_ages_count_the_frames_since_the_point_was_first_tracked(world, tracked):
    results = tracked
    first_seen: dict[int, int] = {}
    observations: dict[int, int] = {}
    for index, (frame, tracks) in enumerate(zip(world.frames, results, strict=True)):
        for row, label in enumerate(frame.labels):
            if label == OUTLIER:
                assert (tracks.lengths[row], tracks.ages[row]) == (1, 0)
                continue
            first_seen.setdefault(label, index)
            observations[label] = observations.get(label, 0) + 1
            assert tracks.lengths[row] == observations[label]
            assert tracks.ages[row] == index - first_seen[label]
    assert max(observations.values()) == len(world.frames)


def test_a_gap_one_frame_longer_than_max_track_gap_starts_new_tracks():
    world = synthetic_world(hidden=(8, 8 + MAX_TRACK_GAP + 1), outliers_per_frame=0)
    results = run(Tracker(max_track_gap=MAX_TRACK_GAP), world)
    before = dict(zip(world.frames[7].labels, results[7].ids, strict=True))
    reappearing = [(label, i) for label, i in zip(world.frames[11].labels, results[11].ids, strict=True)]
    came_back = [
        (label, track_id) for label, track_id in reappearing if label in before and label not in world.frames[10].labels
    ]
    assert len(came_back) > 30
    assert all(before[label] != track_id for label, track_id in came_back)
    assert sum(tracks.lost for tracks in results) > 0


@pytest.mark.parametrize("verification", ["auto", "homography", "fundamental"])
def test_a_planar_scene_keeps_every_id_and_auto_or_the_homography_reject_every_outlier(verification):
    world = synthetic_world(planar=True)
    results = run(Tracker(max_track_gap=MAX_TRACK_GAP, verification=verification), world)
    kept, expected = continuations(world, results, MAX_TRACK_GAP)
    assert kept == expected
    rejected_share = (outlier_lengths(world, results) == 1).mean()
    if verification == "fundamental":
        # A plane leaves the fundamental matrix undetermined: RANSAC's choice fits every point of
        # the plane and whichever outliers lie near its epipolar lines (about half here). This
        # is why `auto` switches to the homography on such scenes.
        assert rejected_share < 1.0
    else:
        assert rejected_share == 1.0
        assert all(len(points) == 1 for points in id_owners(world, results).values())


def test_too_few_matches_to_verify_are_kept_and_counted_as_unverified():
    rng = np.random.default_rng(3)
    descriptors = unit_rows(rng.normal(size=(5, DESCRIPTOR_SIZE)))
    keypoints = rng.uniform(0, 100, (5, 2)).astype(np.float32)
    tracker = Tracker()
    first = tracker.update(Detections(keypoints, np.ones(5, np.float32), descriptors))
    second = tracker.update(Detections(keypoints[::-1] + 3, np.ones(5, np.float32), descriptors[::-1].copy()))
    assert list(second.ids) == list(first.ids[::-1])
    assert second.unverified == 5 and second.rejected == 0


def test_the_ratio_test_refuses_a_track_with_two_equally_good_candidates():
    rng = np.random.default_rng(4)
    descriptors = unit_rows(rng.normal(size=(3, DESCRIPTOR_SIZE)))
    twins = unit_rows(np.stack([descriptors[0] + rng.normal(0, 0.01, DESCRIPTOR_SIZE) for _ in range(2)]))
    scores = np.ones(3, np.float32)
    keypoints = np.array([[10, 10], [50, 50], [90, 20]], np.float32)
    for ratio, twin_matched in ((1.0, True), (0.8, False)):
        tracker = Tracker(ratio_threshold=ratio, verification="none")
        first = tracker.update(Detections(keypoints, scores, descriptors))
        second = tracker.update(
            Detections(
                np.array([[11, 10], [12, 10], [50, 51]], np.float32), scores, np.concatenate((twins, descriptors[1:2]))
            )
        )
        assert second.ids[2] == first.ids[1]
        assert (first.ids[0] in second.ids[:2]) == twin_matched


def test_descriptors_farther_apart_than_nn_threshold_do_not_match():
    rng = np.random.default_rng(5)
    base = unit_rows(rng.normal(size=(1, DESCRIPTOR_SIZE)))
    direction = unit_rows(rng.normal(size=(1, DESCRIPTOR_SIZE)))
    direction -= (direction @ base.T) * base
    direction = unit_rows(direction)
    for distance, matched in ((0.69, True), (0.71, False)):
        # Unit vector at exactly `distance` (L2) from `base`.
        angle = 2 * np.arcsin(distance / 2)
        moved = (np.cos(angle) * base + np.sin(angle) * direction).astype(np.float32)
        tracker = Tracker(nn_threshold=0.7, verification="none")
        first = tracker.update(Detections(np.zeros((1, 2), np.float32), np.ones(1, np.float32), base))
        second = tracker.update(Detections(np.zeros((1, 2), np.float32), np.ones(1, np.float32), moved))
        assert (second.ids[0] == first.ids[0]) == matched


def test_ids_increase_and_wrap_below_2_to_the_24():
    rng = np.random.default_rng(6)
    tracker = Tracker(first_id=ID_LIMIT - 3, verification="none")
    ids = []
    for _ in range(2):
        frame = unit_rows(rng.normal(size=(3, DESCRIPTOR_SIZE)))
        ids += list(tracker.update(Detections(np.zeros((3, 2), np.float32), np.ones(3, np.float32), frame)).ids)
    assert ids == [ID_LIMIT - 3, ID_LIMIT - 2, ID_LIMIT - 1, 0, 1, 2]
    assert all(np.float32(i) == i for i in ids)


def test_after_a_wrap_new_ids_skip_the_ids_of_live_tracks(monkeypatch):
    monkeypatch.setattr(tracking, "ID_LIMIT", 8)
    rng = np.random.default_rng(7)
    tracker = Tracker(verification="none", max_track_gap=0)
    survivor = unit_rows(rng.normal(size=(1, DESCRIPTOR_SIZE)))
    kept_ids = []
    for _ in range(8):
        others = unit_rows(rng.normal(size=(2, DESCRIPTOR_SIZE)))
        tracks = tracker.update(
            Detections(np.zeros((3, 2), np.float32), np.ones(3, np.float32), np.concatenate((survivor, others)))
        )
        kept_ids.append(tracks.ids[0])
        assert len(set(tracks.ids)) == 3
        assert all(0 <= i < 8 for i in tracks.ids)
    assert kept_ids == [0] * 8, "the survivor keeps id 0 though the counter has passed it twice"


def test_an_empty_frame_misses_every_track_and_a_frame_after_it_finds_them_again():
    rng = np.random.default_rng(8)
    descriptors = unit_rows(rng.normal(size=(4, DESCRIPTOR_SIZE)))
    keypoints = rng.uniform(0, 100, (4, 2)).astype(np.float32)
    tracker = Tracker(verification="none", max_track_gap=1)
    first = tracker.update(Detections(keypoints, np.ones(4, np.float32), descriptors))
    empty = tracker.update(
        Detections(np.empty((0, 2), np.float32), np.empty(0, np.float32), np.empty((0, 256), np.float32))
    )
    assert len(empty.ids) == 0 and empty.live == 4
    again = tracker.update(Detections(keypoints, np.ones(4, np.float32), descriptors))
    assert list(again.ids) == list(first.ids)
    assert list(again.ages) == [2] * 4 and list(again.lengths) == [2] * 4


@pytest.mark.parametrize(
    ("keypoints", "descriptors", "problem"),
    [
        (np.zeros((3, 3)), np.zeros((3, 256)), "keypoints must be an (N, 2) array"),
        (np.zeros((3, 2)), np.zeros((2, 256)), "N = 3 keypoints"),
        (np.full((1, 2), np.nan), np.zeros((1, 256)), "finite"),
        (np.zeros((1, 2)), np.full((1, 256), np.nan), "descriptors must be finite"),
    ],
)
def test_inconsistent_arrays_raise_a_value_error_naming_the_problem(keypoints, descriptors, problem):
    tracker = Tracker()
    tracker.update(Detections(np.zeros((1, 2), np.float32), np.ones(1, np.float32), np.eye(1, 256, dtype=np.float32)))
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        tracker.update(
            Detections(
                keypoints.astype(np.float32), np.ones(len(keypoints), np.float32), descriptors.astype(np.float32)
            )
        )


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"nn_threshold": 2.5}, "nn_threshold"),
        ({"ratio_threshold": 0.0}, "ratio_threshold"),
        ({"max_track_gap": -1}, "max_track_gap"),
        ({"verification": "affine"}, "verification"),
        ({"ransac_threshold": 0.0}, "ransac_threshold"),
    ],
)
def test_invalid_settings_are_refused_with_their_name(settings, problem):
    with pytest.raises(ValueError, match=problem):
        TrackingSettings(**settings)


def test_a_first_frame_without_keypoints_does_not_fix_the_descriptor_size():
    tracker = Tracker()
    tracker.update(Detections(np.empty((0, 2), np.float32), np.empty(0, np.float32), np.empty((0, 128), np.float32)))
    tracks = tracker.update(
        Detections(np.zeros((2, 2), np.float32), np.ones(2, np.float32), np.eye(2, 256, dtype=np.float32))
    )
    assert list(tracks.lengths) == [1, 1]


def test_mutual_nearest_neighbours_match_a_brute_force_search_and_give_each_column_once():
    rng = np.random.default_rng(9)
    # Multiples of 1/128 below 1: every dot product is a multiple of 2**-14 below 2**3, exact in
    # float32 whatever the order of the sums, so the tie below is a tie in every block of rows.
    rows = rng.integers(-100, 101, (60, 8)).astype(np.float32) / 128
    columns = rng.integers(-100, 101, (50, 8)).astype(np.float32) / 128
    rows[7] = rows[3]  # two identical rows tie on their best column
    similarity = rows @ columns.T
    expected = {
        (r, int(similarity[r].argmax()))
        for r in range(60)
        if similarity[:, similarity[r].argmax()].max() == similarity[r].max()
        and np.sqrt(max(2 - 2 * similarity[r].max(), 0)) <= 1.2
    }
    expected.discard((7, int(similarity[7].argmax())))
    assert (3, int(similarity[3].argmax())) in expected
    for chunk_rows in (1, 7, 1024):  # one row per block, blocks that split the tie, one block
        found_rows, found_columns = tracking.mutual_nearest_neighbours(
            torch.from_numpy(rows), torch.from_numpy(columns), 1.2, chunk_rows=chunk_rows
        )
        assert set(zip(found_rows.tolist(), found_columns.tolist(), strict=True)) == expected
        assert len(set(found_columns.tolist())) == len(found_columns)


def test_a_descriptor_size_change_starts_the_tracks_afresh_and_both_orders_recover_in_one_frame():
    rng = np.random.default_rng(4)
    points = rng.uniform(0, 400, (20, 2)).astype(np.float32)
    wide, narrow = unit_rows(rng.normal(size=(20, 256))), unit_rows(rng.normal(size=(20, 128)))
    tracker = Tracker()

    def frame(descriptors):
        return tracker.update(Detections(points, np.ones(20, np.float32), descriptors))

    first = frame(wide)
    assert not first.restarted and list(frame(wide).lengths) == [2] * 20
    switched = frame(narrow)
    assert switched.restarted and list(switched.lengths) == [1] * 20 and switched.live == 20
    assert not set(switched.ids) & set(first.ids), "no id is given again"
    assert list(frame(narrow).lengths) == [2] * 20
    back = frame(wide)
    assert back.restarted and list(back.lengths) == [1] * 20 and back.live == 20, "no foreign track stays live"
    assert list(frame(wide).lengths) == [2] * 20


def test_candidate_pairs_are_exactly_the_pairs_within_each_radius():
    rng = np.random.default_rng(10)
    positions = rng.uniform(0, 300, (400, 2)).astype(np.float32)
    centres = rng.uniform(-50, 350, (120, 2)).astype(np.float32)
    centres[0] = (5000, -5000)  # far outside the keypoints' box
    radii = rng.choice([0.0, 16.0, 24.0, 40.0, 100.0], 120).astype(np.float32)
    rows, columns = tracking.candidate_pairs(centres, radii, positions)
    distances = np.linalg.norm(centres[:, None].astype(np.float64) - positions[None], axis=2)
    expected = {(r, c) for r, c in zip(*np.nonzero(distances <= radii[:, None]), strict=True) if radii[r] > 0}
    found = set(zip(rows.tolist(), columns.tolist(), strict=True))
    assert len(found) == len(rows), "no pair twice"
    # float32 against float64 distances: a pair exactly on a circle may go either way.
    on_circle = {(r, c) for r, c in expected ^ found if abs(distances[r, c] - radii[r]) > 1e-3}
    assert not on_circle and len(expected) > 1000


@pytest.mark.parametrize("ratio_threshold", [1.0, 0.9])
def test_guided_matching_equals_dense_matching_restricted_to_the_same_pairs(ratio_threshold):
    rng = np.random.default_rng(11)
    positions = rng.uniform(0, 200, (300, 2)).astype(np.float32)
    centres = positions[rng.permutation(300)[:250]] + rng.normal(0, 6, (250, 2)).astype(np.float32)
    radii = rng.choice([16.0, 24.0], 250).astype(np.float32)
    truth = rng.normal(size=(300, 32))
    columns = unit_rows(truth + rng.normal(0, 0.5, truth.shape))
    rows = unit_rows(truth[rng.permutation(300)[:250]] + rng.normal(0, 0.5, (250, 32)))
    rows_t, columns_t = torch.from_numpy(rows), torch.from_numpy(columns)
    close = torch.from_numpy(np.linalg.norm(centres[:, None] - positions[None], axis=2) <= radii[:, None])
    expected = tracking.mutual_nearest_neighbours(
        rows_t, columns_t, 1.2, ratio_threshold, allowed=lambda start, stop: close[start:stop]
    )
    found = tracking.guided_mutual_nearest_neighbours(
        rows_t, columns_t, centres, radii, positions, 1.2, ratio_threshold
    )
    assert set(zip(*found, strict=True)) == set(zip(*expected, strict=True))
    assert len(found[0]) > 20


def moving_points(rng, count: int = 200):
    points = rng.uniform(100, 500, (count, 2)).astype(np.float32)
    return points, unit_rows(rng.normal(size=(count, DESCRIPTOR_SIZE)))


def test_guided_matching_starts_dense_then_follows_the_motion_and_falls_back_on_a_jump():
    rng = np.random.default_rng(12)
    points, descriptors = moving_points(rng)
    tracker = Tracker()
    # A 200 px jump before frame 4; frame 5 is predicted with that jump as the velocity.
    offsets = [(0, 0), (5, 2), (10, 4), (15, 6), (215, 6), (220, 8), (225, 10)]
    answers = [
        tracker.update(Detections(points + np.float32(offset), np.ones(200, np.float32), descriptors))
        for offset in offsets
    ]
    assert [tracks.guided for tracks in answers] == [False, False, True, True, False, False, True]
    assert all((tracks.lengths == index + 1).all() for index, tracks in enumerate(answers)), "every id kept"


def test_after_a_frame_without_matches_the_next_frame_is_matched_densely():
    rng = np.random.default_rng(13)
    points, descriptors = moving_points(rng)
    tracker = Tracker(max_track_gap=2)
    empty = Detections(np.empty((0, 2), np.float32), np.empty(0, np.float32), np.empty((0, DESCRIPTOR_SIZE)))
    frames = [points, points + 3, None, points + 9]
    answers = [
        tracker.update(empty if frame is None else Detections(frame, np.ones(200, np.float32), descriptors))
        for frame in frames
    ]
    assert [tracks.guided for tracks in answers] == [False, False, False, False]
    assert (answers[-1].lengths == 3).all()


def test_matching_dense_never_guides_and_gives_the_same_ids_on_the_synthetic_world(world, tracked):
    dense = run(Tracker(max_track_gap=MAX_TRACK_GAP, matching="dense"), world)
    assert not any(tracks.guided for tracks in dense)
    assert np.mean([tracks.guided for tracks in tracked]) > 0.8
    assert continuations(world, tracked, MAX_TRACK_GAP) == continuations(world, dense, MAX_TRACK_GAP)


def test_keypoints_bunched_within_the_radius_are_matched_densely():
    rng = np.random.default_rng(14)
    points = rng.uniform(100, 104, (200, 2)).astype(np.float32)  # 200 keypoints in 4 × 4 px
    descriptors = unit_rows(rng.normal(size=(200, DESCRIPTOR_SIZE)))
    tracker = Tracker(verification="none")
    answers = [tracker.update(Detections(points + step, np.ones(200, np.float32), descriptors)) for step in (0, 1, 2)]
    assert not answers[-1].guided and (answers[-1].lengths == 3).all()
