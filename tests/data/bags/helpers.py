"""Bags written from Gardens Point frames for the bag tests: a compressed (the JPEG bytes) and a raw (rgb8) image
topic, a NavSatFix topic along a made-up route heading north, and an odometry topic, in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import utm
from PIL import Image

from netvlad.data.bags.writer import BagWriter, header

T0 = 1_700_000_000_000_000_000  # ns: the first GNSS fix
IMAGE_OFFSET = 250_000_000  # ns: the first image, after the first fix
IMAGE_PERIOD = 500_000_000  # ns between images
LAT0, LON0 = -27.4773, 153.0283  # Brisbane (Gardens Point), UTM zone 56J
DLAT = 1e-4  # degrees of latitude per GNSS fix (≈ 11 m north), fixes 1 s apart
ODOM_SPEED = 2.0  # metres per second along x (odometry)
FORMATS = {"ros1": "run.bag", "mcap": "run.mcap", "sqlite": "run_sqlite"}


def image_stamp(i: int, start: int = T0) -> int:
    return start + IMAGE_OFFSET + i * IMAGE_PERIOD


def fix_latlon(k: int) -> tuple[float, float]:
    return LAT0 + k * DLAT, LON0


def expected_utm(i: int) -> tuple[float, float]:
    """Image i's position by hand: the two fixes around its stamp in UTM (the utm package), linearly weighted."""
    seconds = (IMAGE_OFFSET + i * IMAGE_PERIOD) / 1e9
    k, fraction = int(seconds), seconds - int(seconds)
    (e0, n0, _, _), (e1, n1, _, _) = (utm.from_latlon(*fix_latlon(k)), utm.from_latlon(*fix_latlon(k + 1)))
    return float(e0 + fraction * (e1 - e0)), float(n0 + fraction * (n1 - n0))


def raw_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def image_message(types, ts, stamp: int, path: Path, encoding: str):
    """A CompressedImage (``jpeg``: the file's bytes) or an Image in ``encoding`` of the frame at ``path``."""
    if encoding == "jpeg":
        return types["sensor_msgs/msg/CompressedImage"](header=header(ts, stamp, "camera"), format="jpeg",
                                                        data=np.frombuffer(path.read_bytes(), np.uint8))
    rgb = raw_pixels(path)
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1],
              "mono16": np.zeros(rgb.shape[:2] + (2,), np.uint8)}[encoding]
    height, width, channels = pixels.shape
    return types["sensor_msgs/msg/Image"](header=header(ts, stamp, "camera"), height=height, width=width,
                                          encoding=encoding, is_bigendian=0, step=width * channels,
                                          data=np.ascontiguousarray(pixels).reshape(-1))


def write_run(path: Path, frames: list[Path], *, start: int = T0, raw: str = "rgb8", fixes: int | None = None,
              odometry: bool = True, order: list[int] | None = None, fix_start: int | None = None) -> Path:
    """A bag at ``path`` (``.bag``, ``.mcap`` or a ROS 2 SQLite folder) of ``frames``: ``/camera/compressed``,
    ``/camera/raw`` (``raw`` encoding), ``/gps/fix`` (one fix a second covering every image unless ``fixes``) and
    ``/odom``; ``order``: the order images are logged in (their stamps stay those of their index); ``fix_start``:
    the first fix's stamp (default ``start``)."""
    with BagWriter(path) as bag:
        types, ts = bag.typestore.types, bag.typestore
        for topic, msgtype in (("/camera/compressed", "sensor_msgs/msg/CompressedImage"),
                               ("/camera/raw", "sensor_msgs/msg/Image"), ("/gps/fix", "sensor_msgs/msg/NavSatFix"),
                               ("/odom", "nav_msgs/msg/Odometry")):
            if topic != "/odom" or odometry:
                bag.topic(topic, msgtype)
        for log, i in enumerate(order if order is not None else range(len(frames))):
            stamp, log_ns = image_stamp(i, start), image_stamp(log, start)
            bag.write("/camera/compressed", log_ns, image_message(types, ts, stamp, frames[i], "jpeg"))
            bag.write("/camera/raw", log_ns, image_message(types, ts, stamp, frames[i], raw))
        count = fixes if fixes is not None else (IMAGE_OFFSET + (len(frames) - 1) * IMAGE_PERIOD) // 1_000_000_000 + 2
        status = types["sensor_msgs/msg/NavSatStatus"](status=0, service=1)
        for k in range(count):
            lat, lon = fix_latlon(k)
            stamp = (start if fix_start is None else fix_start) + k * 1_000_000_000
            bag.write("/gps/fix", stamp, types["sensor_msgs/msg/NavSatFix"](
                header=header(ts, stamp, "gps"), status=status, latitude=lat, longitude=lon,
                altitude=10.0, position_covariance=np.zeros(9), position_covariance_type=0))
        if odometry:
            for k in range(2 * count):
                stamp = start + k * 500_000_000
                point = types["geometry_msgs/msg/Point"](x=ODOM_SPEED * k * 0.5, y=0.0, z=0.0)
                pose = types["geometry_msgs/msg/Pose"](position=point,
                                                       orientation=types["geometry_msgs/msg/Quaternion"](
                                                           x=0.0, y=0.0, z=0.0, w=1.0))
                still = types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
                twist = types["geometry_msgs/msg/Twist"](linear=still, angular=still)
                bag.write("/odom", stamp, types["nav_msgs/msg/Odometry"](
                    header=header(ts, stamp, "odom"), child_frame_id="base_link",
                    pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36)),
                    twist=types["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36))))
    return path


def write_folder(folder: Path, frames: list[Path], png: bool = False) -> list[str]:
    """The frames copied (JPEG bytes) or decoded to PNG into ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for path in frames:
        name = path.with_suffix(".png").name if png else path.name
        if png:
            Image.fromarray(raw_pixels(path)).save(folder / name)
        else:
            (folder / name).write_bytes(path.read_bytes())
        names.append(name)
    return names
