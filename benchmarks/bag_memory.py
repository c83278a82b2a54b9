"""Peak memory of reading a bag, short and long: does it stay flat as the bag grows?

Writes two ROS 1 bags of Gardens Point frames (``--frames`` short and long: each frame as a CompressedImage with
the JPEG bytes and as a raw rgb8 Image, so a frame is ≈ 1.6 MB, with NavSatFix fixes at 1 Hz), then runs, each in
a fresh process, ``netvlad extract`` on the compressed topic (in the main process) and on the raw topic (two
DataLoader workers), ``netvlad stream`` and ``netvlad data inspect``, and prints the peak resident memory of each
(the largest of the process and its workers) beside the bag's size.

    python benchmarks/bag_memory.py [--frames 300 3000] [--work /tmp/bag-memory]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from workdir import work_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

PEAK = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL).returncode; print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_kb(command: list[str]) -> int:
    """Peak resident memory (KB) of ``command`` and its children, measured from a fresh process."""
    out = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True, check=True)
    code, peak = out.stdout.split()
    if code != "0":
        raise SystemExit(f"failed ({code}): {' '.join(command)}")
    return int(peak)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--work", type=Path, default=work_dir("bag-memory"))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gardens_point")
    args = parser.parse_args()
    from tests.data.bags.helpers import write_run

    from netvlad.models import ModelConfig, PlaceModel, Preprocessing, save_model
    from netvlad.numerics import cpu_isa, cpu_name

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    model = args.work / "model.safetensors"
    save_model(PlaceModel(ModelConfig(pool="gem", preprocessing=Preprocessing("fixed", (64, 96)))), model)
    netvlad = [sys.executable, "-m", "netvlad.cli.main"]
    common = ["--model", str(model), "--device", "cpu", "--no-progress", "--threads", "1"]
    topics = ["--gps-topic", "/gps/fix", "--image-topic"]
    print("| frames | bag | extract, compressed | extract, raw, 2 workers | stream | data inspect |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.frames:
        bag = args.work / f"run{n}.bag"
        write_run(bag, [args.data / "day_left" / f"Image{i % 200:03d}.jpg" for i in range(n)], odometry=False)
        runs = [
            [*netvlad, "extract", str(bag), *topics, "/camera/compressed", *common, "--workers", "0", "--store",
             str(args.work / f"c{n}")],
            [*netvlad, "extract", str(bag), *topics, "/camera/raw", *common, "--workers", "2", "--store",
             str(args.work / f"r{n}")],
            [*netvlad, "stream", str(bag), *topics, "/camera/compressed", *common, "--out",
             str(args.work / f"s{n}.jsonl")],
            [*netvlad, "data", "inspect", str(bag)],
        ]
        peaks = [peak_kb(command) / 1024 for command in runs]
        print(f"| {n} | {bag.stat().st_size / 2**30:.2f} GiB | " + " | ".join(f"{p:.0f} MiB" for p in peaks) + " |")
        bag.unlink()
    print(f"{cpu_name()} ({cpu_isa()}), 1 torch thread, ImageNet MobileNetV2 + GeM at 64×96")
    shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
