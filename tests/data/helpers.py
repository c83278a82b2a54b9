"""Writers of tiny test datasets with exactly the real on-disk structure (DVGB names, dbStruct .mat, EXIF GPS)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.io
import utm
from PIL import Image

PITTSBURGH = (40.4406, -79.9959)  # lat, lon degrees: downtown Pittsburgh, UTM zone 17T


def write_image(path: Path, size: tuple[int, int] = (24, 16), colour=(120, 60, 30), fmt: str | None = None,
                exif: Image.Exif | None = None) -> Path:
    """A small solid RGB image of ``size`` = (width, height) pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt, **({"exif": exif} if exif is not None else {}))
    return path


def dvgb_name(east: float, north: float, zone=(17, "T"), pano: str = "", timestamp: str = "", ext=".jpg") -> str:
    """A name as VPR-datasets-downloader writes it (lat/lon from the UTM position)."""
    lat, lon = utm.to_latlon(east, north, zone[0], zone[1])
    return (f"@{east:010.2f}@{north:010.2f}@{zone[0]:02d}@{zone[1]}@{lat:09.5f}@{lon:010.5f}"
            f"@{pano}@@@@@@{timestamp}@@{ext}")


def pittsburgh_utm(offsets: np.ndarray) -> np.ndarray:
    """UTM (N, 2) metres: downtown Pittsburgh plus ``offsets`` (N, 2) metres."""
    east, north, _, _ = utm.from_latlon(*PITTSBURGH)
    return np.asarray([east, north]) + np.asarray(offsets, dtype=np.float64).reshape(-1, 2)


def write_dvgb(root: Path, db_utm: np.ndarray, q_utm: np.ndarray, split: str | None = "test",
               db_panos: list[str] | None = None, q_panos: list[str] | None = None) -> Path:
    """``root/images/<split>/{database,queries}/@...@.jpg`` (or ``root/{database,queries}`` with split None)."""
    folder = root / "images" / split if split else root
    for side, points, panos in (("database", db_utm, db_panos), ("queries", q_utm, q_panos)):
        for i, (e, n) in enumerate(points):
            write_image(folder / side / dvgb_name(e, n, pano=panos[i] if panos else ""), colour=(i * 7 % 255, 90, 40))
    return root


def pitts_struct(db_names, db_utm, q_names, q_utm, which="test", db_times=None, q_times=None) -> dict:
    """dbStruct fields as MATLAB holds them: cell columns of names, 2×N UTM, double scalars."""
    fields = {"whichSet": which, "dbImageFns": np.array(db_names, dtype=object).reshape(-1, 1),
              "utmDb": np.asarray(db_utm, dtype=np.float64).T,
              "qImageFns": np.array(q_names, dtype=object).reshape(-1, 1),
              "utmQ": np.asarray(q_utm, dtype=np.float64).T, "numImages": float(len(db_names)),
              "numQueries": float(len(q_names)), "posDistThr": 25.0, "posDistSqThr": 625.0,
              "nonTrivPosDistSqThr": 100.0}
    if db_times is not None:
        fields["dbTimeStamp"] = np.asarray(db_times, dtype=np.float64).reshape(1, -1)
        fields["qTimeStamp"] = np.asarray(q_times, dtype=np.float64).reshape(1, -1)
    return fields


def write_mat_classic(path: Path, fields: dict) -> Path:
    """A v5 .mat file holding ``dbStruct`` (as the released Pittsburgh/Tokyo files are)."""
    scipy.io.savemat(path, {"dbStruct": fields})
    return path


def _h5_char(f: h5py.File | h5py.Group, name: str, text: str) -> h5py.Dataset:
    data = np.array([ord(c) for c in text], dtype=np.uint16).reshape(-1, 1)  # MATLAB 1×L char -> HDF5 (L, 1)
    ds = f.create_dataset(name, data=data)
    ds.attrs["MATLAB_class"] = np.bytes_("char")
    ds.attrs["MATLAB_int_decode"] = np.int32(2)
    return ds


def write_mat_v73(path: Path, fields: dict) -> Path:
    """A MATLAB v7.3 (HDF5) .mat file: 512-byte header, struct group, uint16 chars, cells as object references."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        empty = refs.create_dataset("a", data=np.zeros(2, dtype=np.uint64))
        empty.attrs["MATLAB_class"] = np.bytes_("canonical empty")
        empty.attrs["MATLAB_empty"] = np.uint8(1)
        group = f.create_group("dbStruct")
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        counter = 0
        for key, value in fields.items():
            if isinstance(value, str):
                _h5_char(group, key, value)
            elif isinstance(value, np.ndarray) and value.dtype == object:
                targets = []
                for text in value.ravel():
                    counter += 1
                    targets.append(_h5_char(refs, f"r{counter}", text).ref)
                ds = group.create_dataset(key, data=np.array(targets, dtype=h5py.ref_dtype).reshape(value.shape).T)
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            else:
                ds = group.create_dataset(key, data=np.atleast_2d(np.asarray(value, dtype=np.float64)).T)
                ds.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")
    return path


def gps_exif(lat: float, lon: float, orientation: int | None = None) -> Image.Exif:
    """EXIF with a GPS block (degrees, minutes, seconds and N/S/E/W refs), as phones write it."""
    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        d = int(value)
        m = int((value - d) * 60)
        return float(d), float(m), round((value - d - m / 60) * 3600, 4)

    exif = Image.Exif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)}
    if orientation:
        exif[0x0112] = orientation
    return exif


def example_dataset(fmt: str, root):
    """A minimal dataset of format ``fmt`` under ``root``, and the options it needs."""
    if fmt == "dvgb":
        return write_dvgb(root, pittsburgh_utm([[0, 0]]), pittsburgh_utm([[1, 0]])), {}
    if fmt == "mat":
        write_image(root / "a.jpg")
        return write_mat_v73(root / "x.mat", pitts_struct(["a.jpg"], [[0, 0]], ["a.jpg"], [[0, 0]])), {}
    if fmt == "csv":
        write_image(root / "a.jpg")
        (root / "m.csv").write_text("path,split,easting,northing\na.jpg,database,0,0\na.jpg,query,1,0\n")
        return root / "m.csv", {}
    if fmt == "exif":
        write_image(root / "database" / "a.jpg", exif=gps_exif(*PITTSBURGH), fmt="JPEG")
        write_image(root / "queries" / "b.jpg", exif=gps_exif(*PITTSBURGH), fmt="JPEG")
        return root, {}
    if fmt == "sequence":
        for side in ("summer", "winter"):
            write_image(root / side / "images-00010.png")
        return root, {"database": "summer", "queries": "winter"}
    if fmt == "msls":
        write_msls_side(root / "train_val" / "cph" / "database", [(0.0, 0.0)], "cph", seed=1)
        write_msls_side(root / "train_val" / "cph" / "query", [(2.0, 0.0)], "cph", seed=2)
        return root, {"split": "cph"}
    if fmt == "bag":
        from tests.data.bags.helpers import write_run

        write_image(root / "a.jpg")
        for name in ("db.bag", "q.mcap"):
            write_run(root / name, [root / "a.jpg"], odometry=False)
        return root, {"database": "db.bag", "queries": "q.mcap", "image_topic": "/camera/compressed"}
    raise AssertionError(f"no example for format {fmt}: add one when registering a reader")


TIMES = ("D", "S", "N")


def tokyo_tree(root, query_folder: str, panoramas: int = 3, prefixed: bool = True, db_image=None, q_image=None):
    """``tokyo247.mat`` + database cut-outs ``03814/3814PP_CCC.jpg`` + queries with their one-row .csv files."""
    db_names = [f"03814/3814{p:02d}_{c * 30:03d}.jpg" for p in range(panoramas) for c in range(12)]
    for i, name in enumerate(db_names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if db_image is None:
            write_image(root / name, colour=(i * 5 % 255, 40, 90))
        else:
            db_image(i).save(root / name)
    q_names = [f"{query_folder}/{i:05d}.jpg" if prefixed else f"{i:05d}.jpg" for i in range(1, 4)]
    for i, name in enumerate(q_names):
        path = root / (name if prefixed else f"{query_folder}/{name}")
        if q_image is None:
            write_image(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            q_image(i).save(path)
        path.with_suffix(".csv").write_text(f"{path.name},35.6,139.7,0,0,{TIMES[i]}\n")
    db_utm = pittsburgh_utm([[100.0 * p, 0] for p in range(panoramas) for _ in range(12)])
    q_utm = pittsburgh_utm([[3, 0], [103, 0], [900, 0]])
    return db_names, db_utm, q_names, q_utm


MSLS_ORIGIN = {"cph": (724_500.0, 6_175_200.0), "sf": (551_300.0, 4_180_600.0)}  # UTM metres, city centres


def _msls_key(rng: np.random.Generator) -> str:
    """A 22-character Mapillary image key."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(rng.choice(list(alphabet), 22))


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """A CSV as pandas' ``to_csv`` writes it: an unnamed first column holding the row index."""
    lines = ["," + ",".join(header)] + [",".join(str(v) for v in [i, *row]) for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def write_msls_side(folder: Path, offsets: list[tuple[float, float]], city: str, seed: int, panos=(), nights=(),
                    subtask_false=(), keyed_subtasks: bool = False) -> list[str]:
    """One ``train_val/<city>/{query,database}`` folder as the MSLS release lays it out; returns the keys."""
    rng = np.random.default_rng(seed)
    keys = [_msls_key(rng) for _ in offsets]
    east0, north0 = MSLS_ORIGIN[city]
    zone = (33, "U") if city == "cph" else (10, "S")
    folder.mkdir(parents=True, exist_ok=True)
    post, raw, seq, sub = [], [], [], []
    for i, (key, (de, dn)) in enumerate(zip(keys, offsets, strict=True)):
        lat, lon = utm.to_latlon(east0 + de, north0 + dn, *zone)
        write_image(folder / "images" / f"{key}.jpg", size=(8, 6), colour=(i * 9 % 255, 70, 20), fmt="JPEG")
        post.append([key, f"{north0 + dn:.3f}", f"{east0 + de:.3f}", i in nights, False,
                     "Forward" if i % 3 else "Sideways", i // 2])
        raw.append([key, f"{lon:.7f}", f"{lat:.7f}", 90.0, 1_500_000_000_000 + i, i in panos])
        seq.append([key, f"seq{i // 4}", i % 4])
        flags = [i not in subtask_false] + [i % 2 == 0] * 6
        sub.append(([key] if keyed_subtasks else []) + flags)
    _write_csv(folder / "postprocessed.csv", ["key", "northing", "easting", "night", "control_panel", "view_direction",
                                              "unique_cluster"], post)
    _write_csv(folder / "raw.csv", ["key", "lon", "lat", "ca", "captured_at", "pano"], raw)
    _write_csv(folder / "seq_info.csv", ["key", "sequence_key", "frame_number"], seq)
    _write_csv(folder / "subtask_index.csv", (["key"] if keyed_subtasks else [])
               + ["all", "s2w", "w2s", "o2n", "n2o", "d2n", "n2d"], sub)
    return keys


def write_msls(root: Path, keyed_subtasks: bool = False) -> Path:
    """A two-city MSLS sample (cph, sf) with panoramas, night queries, a query without positives and a
    database image exactly 25 m away."""
    for c, city in enumerate(("cph", "sf")):
        base = root / "train_val" / city
        db = [(0.0, 0.0), (10.0, 0.0), (40.0, 0.0), (80.0, 0.0), (120.0, 0.0), (160.0, 5.0), (200.0, 0.0),
              (240.0, 0.0)]
        write_msls_side(base / "database", db, city, seed=10 + c, panos=(1,), keyed_subtasks=keyed_subtasks)
        queries = [(3.0, 0.0), (65.0, 0.0), (120.0, 25.0), (205.0, 3.0), (5000.0, 0.0), (160.0, 0.0), (41.0, 1.0)]
        write_msls_side(base / "query", queries[: 7 - c], city, seed=20 + c, panos=(5,), nights=(1, 3),
                        keyed_subtasks=keyed_subtasks)
    return root
