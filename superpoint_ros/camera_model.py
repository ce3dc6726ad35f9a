"""A calibrated camera as `sensor_msgs/CameraInfo` describes it, without ROS: pixels to
undistorted normalized coordinates, and to rectified pixels for stereo matching. OpenCV does the
undistortion (`cv2.undistortPoints`, `cv2.fisheye.undistortPoints`)."""

import dataclasses

import cv2
import numpy as np

# CameraInfo's distortion_model names (sensor_msgs/distortion_models.hpp) and the number of
# coefficients OpenCV takes for each.
PINHOLE_MODELS = ("plumb_bob", "rational_polynomial")
FISHEYE_MODEL = "equidistant"
DISTORTION_MODELS = (*PINHOLE_MODELS, FISHEYE_MODEL)


@dataclasses.dataclass(frozen=True)
class CameraModel:
    """`camera_matrix` K `(3, 3)`, `distortion` D `(n,)`, `rectification` R `(3, 3)` and
    `projection` P `(3, 4)`, as in CameraInfo (its `k`, `d`, `r` and `p`).

    `rectified_input`: the keypoints come from the rectified image (`image_rect`), so P is the
    camera matrix and there is no distortion, as image_proc defines it.
    """

    width: int
    height: int
    distortion_model: str
    camera_matrix: np.ndarray
    distortion: np.ndarray
    rectification: np.ndarray
    projection: np.ndarray
    rectified_input: bool = False

    def __post_init__(self) -> None:
        if self.distortion_model not in DISTORTION_MODELS:
            supported = ", ".join(DISTORTION_MODELS)
            raise ValueError(f"distortion_model {self.distortion_model!r} is not supported; use one of {supported}")
        matrix = self.projection[:, :3] if self.rectified_input else self.camera_matrix
        if not (matrix[0, 0] > 0 and matrix[1, 1] > 0):  # NaN fails too
            which = "P" if self.rectified_input else "K"
            raise ValueError(
                f"the camera is not calibrated: focal lengths in {which} are {matrix[0, 0]}, {matrix[1, 1]}"
            )
        if self.distortion_model == FISHEYE_MODEL and len(self.distortion) != 4:
            raise ValueError(f"equidistant distortion needs 4 coefficients, got {len(self.distortion)}")
        if self.distortion_model in PINHOLE_MODELS and len(self.distortion) not in (0, 4, 5, 8, 12, 14):
            raise ValueError(
                f"{self.distortion_model} needs 4, 5, 8, 12 or 14 coefficients, got {len(self.distortion)}"
            )

    def normalized(self, pixels: np.ndarray) -> np.ndarray:
        """`(N, 2)` float64 undistorted normalized coordinates `(x/z, y/z)` in this camera's own
        frame (the rectified one for `rectified_input`) of `(N, 2)` pixels (x right, y down)."""
        if self.rectified_input:
            matrix = self.projection[:, :3]
            return (np.asarray(pixels, np.float64) - matrix[:2, 2]) / np.diag(matrix)[:2]
        return self._undistort(pixels, None, None)

    def rectified(self, pixels: np.ndarray) -> np.ndarray:
        """`(N, 2)` float64 pixels in the rectified image (R, then P), where the epipolar lines
        of a calibrated stereo pair are rows."""
        if self.rectified_input:
            return np.asarray(pixels, np.float64).reshape(-1, 2)
        return self._undistort(pixels, self.rectification, self.projection[:, :3])

    def _undistort(self, pixels: np.ndarray, rectification: np.ndarray | None, projection: np.ndarray | None):
        points = np.ascontiguousarray(pixels, np.float64).reshape(-1, 1, 2)
        if not len(points):
            return np.empty((0, 2))
        if self.distortion_model == FISHEYE_MODEL:
            undistorted = cv2.fisheye.undistortPoints(
                points, self.camera_matrix, self.distortion, R=rectification, P=projection
            )
        else:
            distortion = self.distortion if len(self.distortion) else None
            undistorted = cv2.undistortPoints(points, self.camera_matrix, distortion, R=rectification, P=projection)
        return undistorted.reshape(-1, 2)


def camera_model(
    width: int,
    height: int,
    distortion_model: str,
    k: np.ndarray,
    d: np.ndarray,
    r: np.ndarray,
    p: np.ndarray,
    rectified_input: bool = False,
) -> CameraModel:
    """A `CameraModel` from CameraInfo's flat fields (`k` 9, `d` n, `r` 9, `p` 12 values,
    row-major). An all-zero R or P (an unset field) counts as the identity, or as `[K | 0]`."""
    camera_matrix = np.asarray(k, np.float64).reshape(3, 3)
    rectification = np.asarray(r, np.float64).reshape(3, 3)
    if not rectification.any():
        rectification = np.eye(3)
    projection = np.asarray(p, np.float64).reshape(3, 4)
    if not projection.any():
        projection = np.hstack((camera_matrix, np.zeros((3, 1))))
    return CameraModel(
        width=int(width),
        height=int(height),
        distortion_model=distortion_model,
        camera_matrix=camera_matrix,
        distortion=np.asarray(d, np.float64).ravel(),
        rectification=rectification,
        projection=projection,
        rectified_input=rectified_input,
    )
