"""``python -m data_synthesis {generate,preview} ...``: the offline data tools.

``generate`` runs the resumable, sharded pipeline (see :mod:`data_synthesis.pipeline` for the
config format and the torchrun / SLURM launch); ``preview`` writes a contact sheet
(:mod:`data_synthesis.preview`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _generate(argv: Sequence[str]) -> int:
    from data_synthesis.pipeline import generate, load_config

    parser = argparse.ArgumentParser(
        prog="python -m data_synthesis generate",
        description="Generate (or resume) a synthetic anomaly dataset: normals -> anomalies -> "
        "filter, in the reference layout with a manifest.",
    )
    parser.add_argument(
        "--config", required=True, help="pipeline YAML (see data_synthesis.pipeline)"
    )
    parser.add_argument("--out", required=True, help="output folder; rerun to resume")
    parser.add_argument(
        "--stages",
        default="normals,anomalies,filter",
        help="comma-separated subset of normals,anomalies,filter (default: all)",
    )
    parser.add_argument("--num", type=int, help="number of items (overrides the config)")
    parser.add_argument("--seed", type=int, help="run seed (overrides the config)")
    parser.add_argument("--batch-size", type=int, help="items per step (overrides the config)")
    parser.add_argument("--devices", type=int, default=1, help="processes per node (default 1)")
    parser.add_argument("--accelerator", choices=["cpu", "gpu", "auto"], default="cpu")
    parser.add_argument("--num-nodes", type=int, default=1, help="machines (default 1)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, num=args.num, seed=args.seed, batch_size=args.batch_size)
        summary = generate(
            config,
            args.out,
            stages=[s.strip() for s in args.stages.split(",") if s.strip()],
            devices=args.devices,
            accelerator=args.accelerator,
            num_nodes=args.num_nodes,
            progress=args.progress,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m data_synthesis {generate,preview} [options]  (-h for each)"
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "generate":
        return _generate(rest)
    if command == "preview":
        from data_synthesis.preview import main as preview_main

        preview_main(rest)  # exits through SystemExit with a message on bad input
        return 0
    print(f"python -m data_synthesis: error: unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from anomalyvfm.errors import run_command

    sys.exit(run_command("python -m data_synthesis", main))
