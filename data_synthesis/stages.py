"""The three stages of the offline pipeline: normals -> anomalies -> filter.

A stage turns item indices into outputs. ``load(index)`` reads the item's inputs from disk (it runs
in data-loader workers); ``process(items, device)`` makes the outputs of a batch; the pipeline's
writer encodes them, writes them atomically and appends the manifest record. Every stage reads its
inputs back from the PNG files of the previous stage, never from memory, so a resumed run sees
exactly the bytes an uninterrupted run sees. Item ``i`` of stage ``s`` draws its randomness only
from ``np.random.default_rng([seed, STAGE_IDS[s], i])``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from data_synthesis.io import (
    decode_image,
    image_to_float,
    list_images,
    load_image,
    read_mask,
    resize_image,
)
from data_synthesis.manifest import Record

STAGES: tuple[str, ...] = ("normals", "anomalies", "filter")
STAGE_IDS: dict[str, int] = {"normals": 0, "anomalies": 1, "filter": 2}
# Where short class names (``class_path: CutPasteGenerator``) are looked up, in order. The
# diffusion and filter modules are imported only when a config names one of their classes.
_SEARCH_MODULES = (
    "data_synthesis",
    "data_synthesis.normals",
    "data_synthesis.inpaint",
    "data_synthesis.filter",
)
# Which normals end up in train/ok: "kept" (the reference) those of kept pairs only, 1:1 with
# train/bad; "all" every generated normal, also those whose candidate was dropped.
TrainOk = Literal["kept", "all"]
TRAIN_OK: tuple[str, ...] = ("kept", "all")
NORMALS_DIR = "candidates/normals"
Item = dict[str, Any]
Output = dict[str, Any]


def item_rng(seed: int, stage: str, index: int) -> np.random.Generator:
    """The only random source of item ``index`` in ``stage``."""
    return np.random.default_rng([seed, STAGE_IDS[stage], index])


def resolve_class(class_path: str) -> type:
    """A class from a dotted path or a short name exported by a data_synthesis module."""
    if "." in class_path:
        module_name, _, name = class_path.rpartition(".")
        return getattr(importlib.import_module(module_name), name)  # type: ignore[no-any-return]
    for module_name in _SEARCH_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        if hasattr(module, class_path):
            return getattr(module, class_path)  # type: ignore[no-any-return]
    raise ValueError(f"class_path {class_path!r} not found in {', '.join(_SEARCH_MODULES)}")


def instantiate(spec: dict[str, Any], option: str) -> Any:
    """Build ``{class_path, init_args}``; errors name the config option."""
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise ValueError(f"{option} must be a mapping with 'class_path' (and 'init_args')")
    try:
        return resolve_class(spec["class_path"])(**(spec.get("init_args") or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot build {option} ({spec['class_path']}): {exc}") from exc


def _skipped(index: int, reason: str, **params: Any) -> Output:
    return {"index": index, "status": "skipped", "params": {"reason": reason, **params}}


class Stage:
    """Common state: output folder, seed, and the upstream records each item needs."""

    name = "stage"
    upstream: tuple[str, ...] = ()

    def __init__(self, out: Path, seed: int) -> None:
        self.out = Path(out)
        self.seed = seed
        # Upstream stage name -> index -> its valid record (filled by the pipeline).
        self.inputs: dict[str, dict[int, Record]] = {}

    def path(self, folder: str, index: int) -> str:
        """Output path of ``index`` relative to ``out``."""
        return f"{folder}/{index:06d}.png"

    def place(self, device: Any) -> None:
        """Move models configured with ``device: "auto"`` to this process's device.

        Under DDP each rank owns one device; "auto" in the generator or filter would otherwise
        put every rank's model on the first GPU. Called before the model is first used.
        """
        for value in vars(self).values():
            if getattr(value, "device", None) == "auto":
                value.device = str(device)

    def load(self, index: int) -> Item:
        """Read the inputs of item ``index``."""
        raise NotImplementedError

    def process(self, items: list[Item], device: Any = None) -> list[Output]:
        """Outputs of a batch: dicts with index, status, params and ``arrays`` (path -> array)."""
        raise NotImplementedError

    @staticmethod
    def per_item(
        items: list[Item],
        compute: Callable[[list[Item]], list[Any]],
        emit: Callable[[Item, Any], Output],
    ) -> list[Output]:
        """Runs ``compute`` once on the items not marked ``skip``; ``emit`` makes each output.

        Skipped items (an upstream stage skipped them) pass through as skipped records.
        """
        live = [it for it in items if "skip" not in it]
        results = dict(zip([it["index"] for it in live], compute(live) if live else []))
        return [
            emit(it, results[it["index"]])
            if it["index"] in results
            else _skipped(it["index"], it["skip"])
            for it in items
        ]


class NormalsStage(Stage):
    """Normal images: copied and resized from ``source_dir`` or rendered by a generator.

    They are written to ``candidates/normals/``; the filter stage copies them to ``train/ok``.

    Args:
        out: Output folder. seed: Run seed.
        source_dir: Folder of normal images; item ``i`` uses the ``i mod F``-th of the F files
            (sorted). Mutually exclusive with ``generator``.
        image_size: Resize sources to (height, width) or a square side; None keeps their size.
        generator: ``{class_path, init_args}`` of an object with ``generate(rngs)`` returning one
            ``(image, params)`` per rng (e.g. NormalImageGenerator).
        on_bad_source: "error" stops on an unreadable source naming the file; "skip" records the
            item as skipped (counted in the summary) and goes on.
    """

    name = "normals"

    def __init__(
        self,
        out: Path,
        seed: int,
        source_dir: str | None = None,
        image_size: int | list[int] | None = None,
        generator: dict[str, Any] | None = None,
        on_bad_source: Literal["error", "skip"] = "error",
    ) -> None:
        super().__init__(out, seed)
        if (source_dir is None) == (generator is None):
            raise ValueError("normals: give exactly one of 'source_dir' and 'generator'")
        if on_bad_source not in ("error", "skip"):
            raise ValueError(f"normals.on_bad_source must be 'error' or 'skip': {on_bad_source!r}")
        self.source_dir = Path(source_dir) if source_dir is not None else None
        self.files = list_images(self.source_dir) if self.source_dir is not None else []
        size = [image_size, image_size] if isinstance(image_size, int) else image_size
        self.size = (int(size[0]), int(size[1])) if size is not None else None
        self.generator = instantiate(generator, "normals.generator") if generator else None
        self.on_bad_source = on_bad_source

    def load(self, index: int) -> Item:
        if self.source_dir is None:
            return {"index": index}
        path = self.files[index % len(self.files)]
        source = path.relative_to(self.source_dir).as_posix()
        try:
            image = decode_image(path)
        except ValueError as exc:
            if self.on_bad_source == "error":
                raise ValueError(f"normals item {index}: bad source image {path}: {exc}") from exc
            return {"index": index, "error": str(exc), "source": source}
        params = {"source": source, "source_size": list(image.shape[:2])}
        if self.size is not None:
            # Resized at the decoded precision, then converted: the one rule of data_synthesis.io.
            image = resize_image(image, self.size)
        return {"index": index, "image": image_to_float(image), "params": params}

    def process(self, items: list[Item], device: Any = None) -> list[Output]:
        if self.generator is not None:
            rngs = [item_rng(self.seed, self.name, it["index"]) for it in items]
            made = self.generator.generate(rngs)
            items = [
                {"index": it["index"], "image": im, "params": p} for it, (im, p) in zip(items, made)
            ]
        outputs = []
        for it in items:
            if "error" in it:
                outputs.append(
                    _skipped(it["index"], "bad_source", source=it["source"], error=it["error"])
                )
                continue
            path = self.path(NORMALS_DIR, it["index"])
            outputs.append(
                {
                    "index": it["index"],
                    "status": "ok",
                    "params": it["params"],
                    "arrays": {"image": (path, it["image"])},
                }
            )
        return outputs


class AnomaliesStage(Stage):
    """Anomaly candidates: one per normal image, with the generator's (box) mask.

    Args:
        out: Output folder. seed: Run seed.
        generator: ``{class_path, init_args}`` of either a classic generator called as
            ``gen(image, rng) -> Anomaly`` (CutPasteGenerator, NoiseTextureGenerator...) or a
            batched one with ``generate(images, rngs, objects=..., foregrounds=None,
            backgrounds=...)`` returning one Anomaly per image (DiffusionInpaintGenerator).
        object_key: Key of the normal image's params naming its object (the text-to-image
            generator's vocabulary entry); passed to batched generators for the defect prompt.
        background_key: Key of the normal image's params naming its background; passed to
            batched generators so the defect prompt repeats the normal prompt's background.
    """

    name = "anomalies"
    upstream = ("normals",)

    def __init__(
        self,
        out: Path,
        seed: int,
        generator: dict[str, Any],
        object_key: str = "object",
        background_key: str = "background",
    ) -> None:
        super().__init__(out, seed)
        self.generator = instantiate(generator, "anomalies.generator")
        self.object_key, self.background_key = object_key, background_key

    def load(self, index: int) -> Item:
        normal = self.inputs["normals"][index]
        if normal["status"] != "ok":
            return {"index": index, "skip": "normal_skipped"}
        image = load_image(self.out / normal["files"]["image"]["path"])
        return {"index": index, "image": image, "normal_params": normal["params"]}

    def _generate(self, items: list[Item]) -> list[Any]:
        rngs = [item_rng(self.seed, self.name, it["index"]) for it in items]
        images = [it["image"] for it in items]
        if hasattr(self.generator, "generate"):
            objects = [it["normal_params"].get(self.object_key) for it in items]
            backgrounds = [it["normal_params"].get(self.background_key) for it in items]
            return list(
                self.generator.generate(
                    images,
                    rngs,
                    objects=objects if any(o is not None for o in objects) else None,
                    foregrounds=None,
                    backgrounds=backgrounds if any(b is not None for b in backgrounds) else None,
                )
            )
        return [self.generator(image, rng) for image, rng in zip(images, rngs)]

    def process(self, items: list[Item], device: Any = None) -> list[Output]:
        def emit(it: Item, anomaly: Any) -> Output:
            index = it["index"]
            arrays = {
                "image": (self.path("candidates/images", index), anomaly.image),
                "mask": (self.path("candidates/masks", index), anomaly.mask),
            }
            return {"index": index, "status": "ok", "params": anomaly.params, "arrays": arrays}

        return self.per_item(items, self._generate, emit)


class FilterStage(Stage):
    """Final pairs: candidates whose (filtered) mask is not empty, in the reference layout.

    A kept pair's normal goes to ``train/ok``, its anomalous image to ``train/bad`` and its mask
    to ``ground_truth/bad``, all under the item's index.

    Args:
        out: Output folder. seed: Run seed.
        filter: ``{class_path, init_args}`` of an object with ``filter_batch(normals, anomalous,
            boxes)`` returning results with ``mask``, ``kept`` and ``params``
            (FeatureDistanceFilter). None keeps the generator's mask as is (dropping empty ones).
        train_ok: "kept" (the reference): ``train/ok`` holds the normals of kept pairs only,
            1:1 with ``train/bad``; "all": also the normals of dropped pairs.
    """

    name = "filter"
    upstream = ("normals", "anomalies")

    def __init__(
        self,
        out: Path,
        seed: int,
        filter: dict[str, Any] | None = None,
        train_ok: TrainOk = "kept",
    ) -> None:
        super().__init__(out, seed)
        if train_ok not in TRAIN_OK:
            raise ValueError(f"option 'train_ok' must be one of {list(TRAIN_OK)}, got {train_ok!r}")
        self.filter = instantiate(filter, "filter") if filter else None
        self.train_ok = train_ok

    def load(self, index: int) -> Item:
        candidate = self.inputs["anomalies"][index]
        if candidate["status"] != "ok":
            return {"index": index, "skip": "candidate_skipped"}
        files = candidate["files"]
        return {
            "index": index,
            "normal": load_image(
                self.out / self.inputs["normals"][index]["files"]["image"]["path"]
            ),
            "anomalous": load_image(self.out / files["image"]["path"]),
            "box": read_mask(self.out / files["mask"]["path"]).astype(np.float32),
        }

    def _masks(self, items: list[Item]) -> list[tuple[np.ndarray, bool, dict[str, Any]]]:
        if self.filter is None:
            return [(it["box"], bool(it["box"].any()), {"filter": None}) for it in items]
        results = self.filter.filter_batch(
            [it["normal"] for it in items],
            [it["anomalous"] for it in items],
            [it["box"] for it in items],
        )
        return [(r.mask, bool(r.kept), dict(r.params)) for r in results]

    def process(self, items: list[Item], device: Any = None) -> list[Output]:
        def emit(it: Item, result: tuple[np.ndarray, bool, dict[str, Any]]) -> Output:
            index, (mask, kept, params) = it["index"], result
            normal = {"normal": (self.path("train/ok", index), it["normal"])}
            if not kept:
                arrays = normal if self.train_ok == "all" else {}
                return {"index": index, "status": "dropped", "params": params, "arrays": arrays}
            arrays = {
                **normal,
                "image": (self.path("train/bad", index), it["anomalous"]),
                "mask": (self.path("ground_truth/bad", index), mask),
            }
            return {"index": index, "status": "ok", "params": params, "arrays": arrays}

        return self.per_item(items, self._masks, emit)
