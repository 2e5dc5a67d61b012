"""AUPRO speed and memory: our exact AUPRO vs the previous implementation, the 200-threshold loop
and anomalib's AUPRO, on identical inputs.

    python experiments/benchmarks/aupro.py                      # 1,725 maps at 256x256 (MVTec AD)
    python experiments/benchmarks/aupro.py --anomalib-python /work/bench-anomalib-venv/bin/python
    python experiments/benchmarks/aupro.py --full-res           # MVTec AD's real sizes, per category

Every case runs in a fresh subprocess that loads the same ``.npy`` inputs, so its peak resident
memory (``ru_maxrss``, inputs included) is its own. anomalib runs with another interpreter (its
own virtualenv: it pins its own dependencies), given by ``--anomalib-python``. Times are wall
seconds of the metric computation only (inputs already in memory).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# MVTec AD test set: (category, images, side) - 1,725 images, about 1.5 G pixels.
MVTEC_TEST = [
    ("bottle", 83, 900), ("cable", 150, 1024), ("capsule", 132, 1000), ("carpet", 117, 1024),
    ("grid", 78, 1024), ("hazelnut", 110, 1024), ("leather", 124, 1024), ("metal_nut", 115, 700),
    ("pill", 167, 800), ("screw", 160, 1024), ("tile", 117, 840), ("toothbrush", 42, 1024),
    ("transistor", 100, 1024), ("wood", 79, 1024), ("zipper", 151, 1024),
]  # fmt: skip
CASES = ("ours", "previous", "loop", "anomalib")

ANOMALIB_CODE = """
import json, resource, sys, time
import numpy as np, torch
from anomalib.metrics.aupro import _AUPRO
import anomalib
maps = torch.from_numpy(np.load(sys.argv[1])); masks = torch.from_numpy(np.load(sys.argv[2]))
metric = _AUPRO(fpr_limit=0.3)
metric.update(maps, masks.int())
start = time.perf_counter(); value = float(metric.compute()); seconds = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"value": value, "seconds": seconds, "rss_mb": rss,
                  "version": anomalib.__version__}))
"""


def make_inputs(num: int, height: int, width: int, kind: str, seed: int):
    """Masks with 1-3 round blobs in 70% of the images; random or mask-correlated smooth maps."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    masks = np.zeros((num, height, width), dtype=bool)
    yy, xx = np.ogrid[:height, :width]
    scale = min(height, width) / 256
    for i in range(num):
        if rng.random() < 0.7:
            for _ in range(int(rng.integers(1, 4))):
                cy, cx = rng.integers(0, height), rng.integers(0, width)
                radius = rng.integers(4, 24) * scale
                masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    maps = rng.random((num, height, width), dtype=np.float32)
    if kind == "realistic":
        for i in range(num):
            smooth = ndimage.uniform_filter(maps[i], 9) + 0.4 * ndimage.uniform_filter(
                masks[i].astype(np.float32), 9
            )
            maps[i] = 1.0 / (1.0 + np.exp(-8.0 * (smooth - 0.6)))
    return maps, masks


def run_case(case: str, maps_path: str, masks_path: str, device: str) -> dict:
    """Runs one case in this process (called in a fresh subprocess)."""
    import torch

    from anomalyvfm.metrics.compat import threshold_loop_aupro
    from anomalyvfm.metrics.functional import _aupro, aupro

    maps = torch.from_numpy(np.load(maps_path)).to(device)
    masks = torch.from_numpy(np.load(masks_path)).to(device)
    fn = {
        "ours": lambda: aupro(maps, masks, 0.3),
        "previous": lambda: _aupro(maps, masks, 0.3, restrict=True),
        "loop": lambda: threshold_loop_aupro(maps, masks, 0.3, 200),
    }[case]
    if device == "cuda":
        fn()  # warm-up: CUDA context and kernels
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = float(fn())
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"value": value, "seconds": seconds, "rss_mb": rss}


def spawn(case: str, maps_path: Path, masks_path: Path, args: argparse.Namespace, device: str):
    """Result dict of a case run in a fresh process, or a reason string."""
    if case == "anomalib":
        python = args.anomalib_python
        if not python or not Path(python).exists():
            return f"not measured (no anomalib interpreter: --anomalib-python {python})"
        cmd = [python, "-c", ANOMALIB_CODE, str(maps_path), str(masks_path)]
    else:
        cmd = [sys.executable, __file__, "--worker", case, str(maps_path), str(masks_path), device]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return f"failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def benchmark(maps, masks, cases: list[str], args: argparse.Namespace, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        maps_path, masks_path = Path(tmp) / "maps.npy", Path(tmp) / "masks.npy"
        np.save(maps_path, maps)
        np.save(masks_path, masks)
        return {case: spawn(case, maps_path, masks_path, args, device) for case in cases}


def print_table(title: str, results: dict) -> None:
    print(f"\n{title}")
    print(f"| {'case':10s} | {'value':>20s} | {'seconds':>8s} | {'peak RSS MB':>11s} | speed-up |")
    print("|---|---|---|---|---|")
    ours = results.get("ours")
    for case, res in results.items():
        if isinstance(res, str):
            print(f"| {case:10s} | {res} |")
            continue
        ratio = res["seconds"] / ours["seconds"] if isinstance(ours, dict) else float("nan")
        print(
            f"| {case:10s} | {res['value']:20.15f} | {res['seconds']:8.2f} | "
            f"{res['rss_mb']:11.0f} | ours {ratio:5.1f}x faster |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num", type=int, default=1725, help="maps (MVTec AD test set: 1725)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--maps", choices=["random", "realistic"], default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--anomalib-python", default=None, help="interpreter with anomalib")
    parser.add_argument("--full-res", action="store_true", help="MVTec sizes, per category")
    parser.add_argument("--full-res-fraction", type=float, default=1.0, help="of each category")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case, maps_path, masks_path, device = args.worker
        print(json.dumps(run_case(case, maps_path, masks_path, device)))
        return
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if not args.full_res:
        maps, masks = make_inputs(args.num, args.size, args.size, args.maps, args.seed)
        title = f"{args.num} {args.maps} maps at {args.size}x{args.size}"
        print(f"{title}: {maps.size / 1e6:.1f} M pixels, {masks.mean() * 100:.2f}% anomalous")
        for device in devices:
            cases = args.cases if device == "cpu" else [c for c in args.cases if c == "ours"]
            print_table(f"{title}, {device}", benchmark(maps, masks, cases, args, device))
        if len(devices) == 1:
            print("\ncuda: no GPU: not measured")
        return
    total: dict[str, float] = {}
    for name, count, side in MVTEC_TEST:
        count = max(1, round(count * args.full_res_fraction))
        maps, masks = make_inputs(count, side, side, args.maps, args.seed)
        results = benchmark(maps, masks, args.cases, args, devices[-1])
        print_table(f"{name}: {count} maps at {side}x{side} ({devices[-1]})", results)
        for case, res in results.items():
            if isinstance(res, dict):
                total[case] = total.get(case, 0.0) + res["seconds"]
    print("\ntotal seconds over the 15 categories:", json.dumps(total))


if __name__ == "__main__":
    main()
