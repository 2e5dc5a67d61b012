"""Noise-texture generator speed, this tree against a git revision, in one process.

    OMP_NUM_THREADS=1 python experiments/benchmarks/noise_ab.py --rev 318c14e

Loads ``data_synthesis/noise.py`` as of ``--rev`` (via ``git show``) beside the current one and
times both alternately on the same 768x768 image and seeds, so the two rates share the machine's
load. Prints a markdown table of median images per second of process CPU time (one core).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def load_revision(rev: str):
    source = subprocess.run(
        ["git", "show", f"{rev}:data_synthesis/noise.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "noise_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("noise_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="git revision to compare against")
    parser.add_argument("--dtd", default=str(REPO.parent / "shared" / "data" / "dtd"))
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from data_synthesis.noise import NoiseTextureGenerator

    old = load_revision(args.rev)
    gens = {
        ("procedural", args.rev): old.NoiseTextureGenerator(),
        ("procedural", "tree"): NoiseTextureGenerator(),
    }
    if Path(args.dtd).is_dir():
        gens[("texture folder", args.rev)] = old.NoiseTextureGenerator(texture_dir=args.dtd)
        gens[("texture folder", "tree")] = NoiseTextureGenerator(texture_dir=args.dtd)
    image = np.random.default_rng(0).random((args.size, args.size, 3), dtype=np.float32)
    rates: dict[tuple[str, str], list[float]] = {key: [] for key in gens}
    for rep in range(args.repeats):
        for key, gen in gens.items():
            start = time.process_time()
            for i in range(args.calls):
                gen(image, np.random.default_rng([rep, i]))
            rates[key].append(args.calls / (time.process_time() - start))
    print(f"| noise texture ({args.size}px) | {args.rev} img/s per core | tree img/s per core |")
    print("|---|---|---|")
    for kind in dict.fromkeys(k for k, _ in gens):
        before = float(np.median(rates[(kind, args.rev)]))
        after = float(np.median(rates[(kind, "tree")]))
        print(f"| {kind} | {before:.1f} | {after:.1f} |")


if __name__ == "__main__":
    main()
