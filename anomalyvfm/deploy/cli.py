"""``anomalyvfm predict --input ...`` and ``anomalyvfm calibrate``: a detector on files.

``predict`` scores a folder (recursively), a glob or a list file of images with a checkpoint and
writes, under ``--output``:

* ``predictions.csv``: one row per image (path, score, label, threshold, max pixel score,
  anomalous area fraction, calibrated, and the reason when the file could not be read; such a
  file never stops the run);
* ``maps/``, ``masks/`` and ``overlays/``, mirroring the input's relative paths: the anomaly
  map (``.npy`` float32, or a 16-bit PNG of score x 65535), the binary mask and a heat map
  overlay on the fixed [0, 1] colour scale;
* ``predict.json``: the checkpoint and its SHA-256, the thresholds and their rule, the counts.

A rerun into the same folder skips the images already scored. ``--devices N`` runs N worker
processes, each scoring the deterministic shard ``files[rank::N]``; under ``torchrun`` each rank
is one worker (``RANK``/``WORLD_SIZE``). Workers write their rows to ``.parts/``, which are merged
into one ``predictions.csv`` at the end.

``calibrate`` sets the thresholds from a folder of normal images and writes a calibrated
checkpoint (:meth:`Detector.calibrate <anomalyvfm.deploy.Detector.calibrate>`, then ``save``).
``export`` writes the detector as one ONNX or ``.pt2`` file (:meth:`Detector.export`).
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from PIL import Image

from anomalyvfm.errors import hint
from data_synthesis.io import IMAGE_EXTENSIONS, decode_image, image_to_float, list_images

COLUMNS = (
    "path",
    "score",
    "label",
    "threshold",
    "max_pixel_score",
    "anomalous_area",
    "calibrated",
    "error",
)
PARTS = ".parts"
_GLOB_CHARS = frozenset("*?[")


def handles(words: Sequence[str]) -> bool:
    """Whether the console arguments are this module's: ``calibrate``, or ``predict`` with
    ``--input`` (without it, ``predict`` is Lightning's, on a config's ``test_datasets``)."""
    if not words:
        return False
    if words[0] in ("calibrate", "export"):
        return True
    return words[0] == "predict" and any(w == "--input" or w.startswith("--input=") for w in words)


class _Parser(argparse.ArgumentParser):
    """Parse errors in one line and a hint, exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n{hint(self.prog)}\n")
        self.exit(2)


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {value!r}") from None
    if not 0 <= number < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1); got {value!r}")
    return number


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {value!r}")
    return number


def _shard(value: str) -> tuple[int, int]:
    rank, _, world = value.partition("/")
    try:
        r, w = int(rank), int(world)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RANK/WORLD, e.g. 0/2; got {value!r}") from None
    if not 0 <= r < w:
        raise argparse.ArgumentTypeError(f"expected 0 <= RANK < WORLD; got {value!r}")
    return r, w


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ckpt_path", "--ckpt-path", dest="ckpt_path", required=True, help="checkpoint of fit"
    )
    parser.add_argument("--batch-size", type=_positive, default=8, help="images per forward (8)")
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1, ... or auto (cuda when present)"
    )
    parser.add_argument("--precision", choices=("32", "bf16"), default="32")
    parser.add_argument(
        "--backbone-checkpoint",
        help="local weights of the frozen backbone, replacing the checkpoint's recorded source",
    )


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Score images or calibrate thresholds.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    predict = sub.add_parser(
        "predict", help="score images", description="Score a folder, glob or list of images."
    )
    _common(predict)
    predict.add_argument(
        "--input", required=True, help="a folder (recursive), a glob, an image or a list file"
    )
    predict.add_argument("--output", required=True, help="output folder")
    predict.add_argument(
        "--map-format", choices=("npy", "png16"), default="npy", help="anomaly map files (npy)"
    )
    predict.add_argument(
        "--devices", type=_positive, default=1, help="worker processes, one shard each (1)"
    )
    predict.add_argument("--workers", type=_positive, default=2, help="decoding threads (2)")
    predict.add_argument(
        "--overwrite", action="store_true", help="score everything again instead of resuming"
    )
    predict.add_argument("--shard", type=_shard, help=argparse.SUPPRESS)
    calibrate = sub.add_parser(
        "calibrate",
        help="thresholds from normal images",
        description="Set thresholds from normal images; write a calibrated checkpoint.",
    )
    _common(calibrate)
    calibrate.add_argument(
        "--normal", required=True, help="normal images: a folder, a glob or a list file"
    )
    calibrate.add_argument(
        "--target-fpr", type=_rate, default=0.01, help="fraction of normal images/pixels flagged"
    )
    calibrate.add_argument("--output", required=True, help="the calibrated checkpoint to write")
    export = sub.add_parser(
        "export",
        help="one ONNX or .pt2 file",
        description="Write the detector (adapters merged, thresholds inside) as one ONNX or "
        "torch.export file that needs neither this package nor timm.",
    )
    export.add_argument(
        "--ckpt_path", "--ckpt-path", dest="ckpt_path", required=True, help="checkpoint of fit"
    )
    export.add_argument("--output", required=True, help="the file to write: *.onnx or *.pt2")
    export.add_argument(
        "--format", choices=("onnx", "pt2"), help="file format (default: from the suffix)"
    )
    export.add_argument(
        "--backbone-checkpoint",
        help="local weights of the frozen backbone, replacing the checkpoint's recorded source",
    )
    return parser


# -- inputs ---------------------------------------------------------------------------------


def list_inputs(spec: str, option: str = "--input") -> tuple[Path, list[Path]]:
    """The images of ``spec`` and the folder their relative paths start from.

    ``spec`` is a folder (searched recursively), an image file, a glob (``**`` recursive) or a
    list file (one path per line, relative to the list's folder; ``#`` starts a comment). Files
    are in the package's listing order. A listed file that is missing stays in the list (its
    row gets the error).

    Raises:
        FileNotFoundError: nothing is at ``spec``. ValueError: no image found.
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        files = list_images(path, recursive=True, allow_empty=True)
        if not files:
            raise ValueError(
                f"{option} {spec}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in the "
                "folder or its sub-folders"
            )
        return path, files
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        return path.parent, [path]
    if path.is_file():
        base = path.parent
        entries = []
        for line in path.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entry = Path(line).expanduser()
                entries.append(entry if entry.is_absolute() else base / entry)
        if not entries:
            raise ValueError(f"{option} {spec}: the list file names no image")
        root = Path(os.path.commonpath([str(p.parent.absolute()) for p in entries]))
        files = [p.absolute() for p in entries]
        return root, _ordered(root, files)
    if _GLOB_CHARS & set(spec):
        matches = [Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)]
        files = [p for p in matches if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        if not files:
            raise ValueError(f"{option} {spec}: the glob matches no image file")
        head = [part for part in Path(spec).expanduser().parts]
        fixed = []
        for part in head:
            if _GLOB_CHARS & set(part):
                break
            fixed.append(part)
        root = Path(*fixed) if fixed else Path(".")
        return root, _ordered(root, files)
    raise FileNotFoundError(f"{option} {spec}: no such folder, image, list file or glob match")


def _ordered(root: Path, files: list[Path]) -> list[Path]:
    unique = list(dict.fromkeys(files))
    return sorted(unique, key=lambda p: p.relative_to(root).parts)


def output_names(root: Path, files: list[Path]) -> dict[Path, Path]:
    """Each input's relative output stem (its relative path without the extension).

    Raises:
        ValueError: two inputs would write the same outputs (same folder and stem).
    """
    names: dict[Path, Path] = {}
    seen: dict[Path, Path] = {}
    for path in files:
        rel = path.relative_to(root).with_suffix("")
        other = seen.setdefault(rel, path)
        if other != path:
            raise ValueError(
                f"--input: {other} and {path} would write the same output files "
                f"({rel}.*); rename one of them"
            )
        names[path] = rel
    return names


# -- output rows ----------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _previous_rows(out: Path) -> dict[str, dict[str, str]]:
    """Rows of earlier runs into ``out``: predictions.csv, then unmerged worker parts."""
    rows = {r["path"]: r for r in read_rows(out / "predictions.csv")}
    for part in sorted((out / PARTS).glob("*.csv")):
        rows.update({r["path"]: r for r in read_rows(part)})
    return rows


def _done(rows: dict[str, dict[str, str]]) -> set[str]:
    return {p for p, r in rows.items() if not r.get("error")}


def _row(path: Path, detector: Any, pred: Any = None, error: str = "") -> dict[str, Any]:
    if pred is None:
        return {
            "path": str(path),
            "score": "",
            "label": "",
            "threshold": f"{detector.image_threshold:.8g}",
            "max_pixel_score": "",
            "anomalous_area": "",
            "calibrated": str(detector.calibrated).lower(),
            "error": error,
        }
    return {
        "path": str(path),
        "score": f"{pred.score:.8g}",
        "label": int(pred.label),
        "threshold": f"{pred.image_threshold:.8g}",
        "max_pixel_score": f"{float(pred.anomaly_map.max()):.8g}",
        "anomalous_area": f"{float(pred.mask.mean()):.8g}",
        "calibrated": str(pred.calibrated).lower(),
        "error": "",
    }


def write_outputs(out: Path, rel: Path, pixels: np.ndarray, pred: Any, map_format: str) -> None:
    """The anomaly map, mask and overlay of one image under ``out``."""
    from anomalyvfm.visualization import heatmap_overlay

    targets = {
        kind: out / kind / rel.with_name(rel.name + suffix)
        for kind, suffix in (
            ("maps", ".npy" if map_format == "npy" else ".png"),
            ("masks", ".png"),
            ("overlays", ".png"),
        )
    }
    for target in targets.values():
        target.parent.mkdir(parents=True, exist_ok=True)
    amap = pred.anomaly_map.astype(np.float32)
    if map_format == "npy":
        np.save(targets["maps"], amap)
    else:
        scaled = np.clip(np.rint(np.clip(amap, 0, 1) * 65535), 0, 65535).astype(np.uint16)
        Image.fromarray(scaled).save(targets["maps"])
    Image.fromarray(pred.mask.astype(np.uint8) * 255).save(targets["masks"])
    overlay = heatmap_overlay(image_to_float(pixels), amap)
    Image.fromarray(overlay).save(targets["overlays"])


def _decode(path: Path) -> np.ndarray | str:
    """The decoded image, or the one-line reason it cannot be read."""
    try:
        return decode_image(path)
    except (OSError, ValueError) as err:
        text = str(err).strip().splitlines()
        return text[0] if text else type(err).__name__


# -- predict --------------------------------------------------------------------------------


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available (use --device cpu)")
    return name


def _world(args: argparse.Namespace) -> tuple[int, int, str]:
    """(rank, world size, how): ``--shard``, torchrun's environment, or a single process."""
    if args.shard is not None:
        return args.shard[0], args.shard[1], "shard"
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        return int(os.environ.get("RANK", "0")), world, "torchrun"
    return 0, 1, "single"


def predict(args: argparse.Namespace, argv: list[str], prog: str) -> int:
    out = Path(args.output).expanduser()
    root, files = list_inputs(args.input)
    # An output folder inside the input folder: its maps and overlays are not inputs.
    resolved = out.resolve()
    files = [p for p in files if not p.resolve().is_relative_to(resolved)]
    if not files:
        raise ValueError(f"--input {args.input}: no images outside --output {out}")
    names = output_names(root, files)
    rank, world, how = _world(args)
    if args.devices > 1 and how == "single":
        return _launch(args, argv, prog, out, root, files)
    from anomalyvfm.deploy.detector import Detector

    device = _device(args.device)
    if how == "torchrun" and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    detector = Detector.from_checkpoint(
        args.ckpt_path, device, args.backbone_checkpoint, args.precision
    )
    if how != "shard":
        _prepare_output(out, detector, args.overwrite and rank == 0)
    if how == "torchrun":
        _join_ranks()  # rank 0 has cleared an overwritten folder before anyone writes
    elif world > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    done = _done(_previous_rows(out))
    mine = [p for p in files[rank::world] if str(p) not in done]
    _score_files(detector, mine, names, out, args, rank, world)
    skipped = sum(1 for p in files if str(p) in done)
    if how == "torchrun":
        _join_ranks(last=True)  # every rank's rows are written
    if how == "shard" or rank != 0:
        return 0
    return _finish(out, root, files, detector, args, world, skipped)


def _prepare_output(out: Path, detector: Any, overwrite: bool) -> None:
    """Checks that a resumed folder holds predictions of this checkpoint and thresholds."""
    out.mkdir(parents=True, exist_ok=True)
    record = out / "predict.json"
    if overwrite:
        for stale in [out / "predictions.csv", record, *(out / PARTS).glob("*")]:
            stale.unlink(missing_ok=True)
        return
    if not record.is_file():
        return
    before = json.loads(record.read_text())
    now = detector.describe()
    if before.get("checkpoint_sha256") != now["checkpoint_sha256"]:
        raise ValueError(
            f"--output {out} holds predictions of checkpoint {before.get('checkpoint')} "
            f"(sha256 {str(before.get('checkpoint_sha256'))[:12]}), not of {now['checkpoint']} "
            f"(sha256 {str(now['checkpoint_sha256'])[:12]}); give a new --output or --overwrite"
        )
    for key in ("image_threshold", "pixel_threshold"):
        if before.get(key) != now[key]:
            raise ValueError(
                f"--output {out} holds predictions made with another {key.replace('_', ' ')} "
                f"({before.get(key)} there, {now[key]} now); give a new --output or --overwrite"
            )


def _score_files(
    detector: Any,
    files: list[Path],
    names: dict[Path, Path],
    out: Path,
    args: argparse.Namespace,
    rank: int,
    world: int,
) -> None:
    from tqdm import tqdm

    part = out / PARTS / f"rank{rank}-of-{world}.csv"
    part.parent.mkdir(parents=True, exist_ok=True)
    new = not part.is_file()
    bar = tqdm(
        total=len(files),
        desc=f"predict [{rank}/{world}]" if world > 1 else "predict",
        unit="img",
        position=rank,
        dynamic_ncols=True,
    )
    with (
        part.open("a", newline="") as f,
        ThreadPoolExecutor(args.workers) as pool,
        bar,
    ):
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        for start in range(0, len(files), args.batch_size):
            chunk = files[start : start + args.batch_size]
            decoded = list(pool.map(_decode, chunk))
            good = [(p, x) for p, x in zip(chunk, decoded, strict=True) if not isinstance(x, str)]
            rows = {
                p: _row(p, detector, error=x)
                for p, x in zip(chunk, decoded, strict=True)
                if isinstance(x, str)
            }
            scored = detector.score_pixels([x for _, x in good])
            for (path, pixels), (score, amap) in zip(good, scored, strict=True):
                pred = detector.decide(score, amap, str(path))
                write_outputs(out, names[path], pixels, pred, args.map_format)
                rows[path] = _row(path, detector, pred)
            writer.writerows(rows[p] for p in chunk)
            f.flush()
            bar.update(len(chunk))


def _finish(
    out: Path,
    root: Path,
    files: list[Path],
    detector: Any,
    args: argparse.Namespace,
    world: int,
    skipped: int,
) -> int:
    """Merges the rows into predictions.csv (input order) and writes predict.json."""
    rows = _previous_rows(out)
    listed = {str(p) for p in files}
    ordered = [rows[str(p)] for p in files if str(p) in rows]
    # Rows of earlier runs on other inputs stay, after this run's.
    ordered += [r for p, r in rows.items() if p not in listed]
    target = out / "predictions.csv"
    partial = out / "predictions.csv.partial"
    with partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ordered)
    partial.replace(target)
    for part in (out / PARTS).glob("*"):
        part.unlink()
    if (out / PARTS).is_dir():
        (out / PARTS).rmdir()
    mine = [rows[str(p)] for p in files if str(p) in rows]
    errors = sum(1 for r in mine if r.get("error"))
    anomalous = sum(1 for r in mine if r.get("label") == "1")
    record = {
        **detector.describe(),
        "input": args.input,
        "input_root": str(root),
        "output": str(out),
        "map_format": args.map_format,
        "devices": world,
        "num_inputs": len(files),
        "num_scored": len(mine) - errors,
        "num_anomalous": anomalous,
        "num_errors": errors,
        "num_skipped": skipped,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (out / "predict.json").write_text(json.dumps(record, indent=2) + "\n")
    missing = len(files) - len(mine)
    summary = (
        f"{len(mine) - errors} of {len(files)} images scored, {anomalous} anomalous "
        f"(threshold {detector.image_threshold:.4g}"
        f"{'' if detector.calibrated else ', uncalibrated'}), {errors} unreadable"
        + (f", {skipped} already done before this run" if skipped else "")
    )
    print(f"{summary}; written to {target}")
    if errors:
        first = next(r for r in mine if r.get("error"))
        print(f"unreadable, e.g. {first['path']}: {first['error']}", file=sys.stderr)
    if missing:
        raise RuntimeError(f"{missing} image(s) have no row in {target}; rerun to resume")
    return 0


def _launch(
    args: argparse.Namespace,
    argv: list[str],
    prog: str,
    out: Path,
    root: Path,
    files: list[Path],
) -> int:
    """``--devices N``: N worker processes on the shards, then one merge here."""
    from anomalyvfm.deploy.detector import Detector

    device = _device(args.device)
    gpus: list[str] = []
    if device.startswith("cuda"):
        import torch

        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
        if len(ids) < args.devices:
            raise ValueError(f"--devices {args.devices}: only {len(ids)} CUDA device(s) visible")
        gpus = ids[: args.devices]
    detector = Detector.from_checkpoint(
        args.ckpt_path, "cpu", args.backbone_checkpoint, args.precision
    )
    _prepare_output(out, detector, args.overwrite)
    done = _done(_previous_rows(out))
    skipped = sum(1 for p in files if str(p) in done)
    base = [a for a in argv if a != "--overwrite"]
    procs = []
    for rank in range(args.devices):
        env = dict(os.environ)
        cmd = [sys.executable, "-m", "anomalyvfm", *base, "--shard", f"{rank}/{args.devices}"]
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[rank]
            cmd += ["--device", "cuda"]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    failed = [r for r, c in enumerate(codes) if c != 0]
    if failed:
        raise RuntimeError(
            f"worker(s) {failed} of {args.devices} failed (see above); the rows written so far "
            f"are kept in {out / PARTS}: rerun the same command to resume"
        )
    return _finish(out, root, files, detector, args, args.devices, skipped)


def _join_ranks(last: bool = False) -> None:
    """A barrier of torchrun's ranks (a gloo group, created at the first call)."""
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        # Scoring a large shard takes long: the other ranks wait at the barrier meanwhile.
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    dist.barrier()
    if last:
        dist.destroy_process_group()


# -- calibrate ------------------------------------------------------------------------------


def calibrate(args: argparse.Namespace) -> int:
    from anomalyvfm.deploy.detector import Detector

    _, files = list_inputs(args.normal, "--normal")
    output = Path(args.output).expanduser()
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give the checkpoint file to write")
    detector = Detector.from_checkpoint(
        args.ckpt_path, _device(args.device), args.backbone_checkpoint, args.precision
    )
    result = detector.calibrate(files, args.target_fpr, batch_size=args.batch_size)
    detector.save(output)
    print(
        f"calibrated on {result.num_images} normal images (target FPR {args.target_fpr:g}): "
        f"image threshold {result.image_threshold:.6g}, pixel threshold "
        f"{result.pixel_threshold:.6g}; written to {output}"
    )
    return 0


# -- export ---------------------------------------------------------------------------------


def export(args: argparse.Namespace) -> int:
    from anomalyvfm.deploy.detector import Detector
    from anomalyvfm.deploy.export import format_of

    output = Path(args.output).expanduser()
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give the file to write (*.onnx, *.pt2)")
    fmt = format_of(output, args.format)  # before loading the checkpoint: fail fast
    detector = Detector.from_checkpoint(args.ckpt_path, "cpu", args.backbone_checkpoint)
    path = detector.export(output, fmt)
    state = "calibrated" if detector.calibrated else "uncalibrated (0.5)"
    print(
        f"exported {fmt} to {path} ({path.stat().st_size / 2**20:.1f} MiB); thresholds "
        f"{state}: image {detector.image_threshold:.6g}, pixel {detector.pixel_threshold:.6g}"
    )
    return 0


def main(argv: list[str], prog: str = "anomalyvfm") -> int:
    """Runs ``predict --input ...``, ``calibrate`` or ``export`` (``argv`` starts with the
    subcommand)."""
    args = build_parser(prog).parse_args(argv)
    if args.command == "calibrate":
        return calibrate(args)
    if args.command == "export":
        return export(args)
    return predict(args, argv, f"{prog} predict")
