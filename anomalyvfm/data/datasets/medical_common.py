"""Shared readers of the medical zero-shot benchmarks, in the layouts they are distributed in.

Two families:

* image-level sets in two folders, one normal and one anomalous (BrainMRI, Br35H:
  ``no/`` and ``yes/``), read by :class:`TwoFolderImageSet`; no masks (``pixel_labels=False``).
* lesion segmentation sets, an image folder and a mask folder matched by file stem (ISIC 2016,
  CVC-ClinicDB, CVC-ColonDB, Kvasir-SEG, EndoTect, TN3K), read by :class:`LesionSegmentationSet`.
  Every image shows a lesion, so image labels carry no information (``image_labels=False``):
  image metrics are excluded and only pixel metrics are computed.

Masks are read by the package's one rule (:func:`data_synthesis.io.read_mask`): any non-zero
pixel is anomalous, except in JPEG masks (Kvasir-SEG, TN3K), whose compression leaves values
near, not at, 0 and 255: those are cut at half of 255 unless ``mask_threshold`` says otherwise.
Records are in the package's one listing order (:func:`data_synthesis.io.list_images`: plain
name order, ``10.png`` before ``2.png``), which does not depend on the file system.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalyvfm.data.datasets.base import EvalDataset, Record
from data_synthesis.io import list_images

# Mask formats tried for an image, after the image's own extension, in this order: every image
# extension (data_synthesis.io.IMAGE_EXTENSIONS), the lossless ones first.
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp", ".gif", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class PairLayout:
    """One way a segmentation set is laid out: an image folder and a mask folder.

    Attributes:
        images: image folder, relative to the root.
        masks: mask folder, relative to the root.
        mask_suffix: appended to the image's stem to name its mask (``_Segmentation`` in ISIC).
        mask_ext: the masks' extension as distributed (``.png`` in ISIC), tried first and named
            when a mask is missing; None for the image's own extension. Other formats are
            accepted too (re-encoded copies circulate).
    """

    images: str
    masks: str
    mask_suffix: str = ""
    mask_ext: str | None = None

    def describe(self) -> str:
        """The layout in words, for error messages."""
        mask = f"<root>/{self.masks}/<name>{self.mask_suffix}{self.mask_ext or '.<ext>'}"
        return f"<root>/{self.images}/<name>.<ext> with its mask {mask}"


class LesionSegmentationSet(EvalDataset):
    """A pixel-level set: every image anomalous, its mask in a parallel folder.

    The first of ``layouts`` whose image folder exists under the root is read.

    Args:
        root: dataset root folder.
        name: dataset name in metric names.
        category: the set's single category.
        defect_type: what the masks mark (``lesion``, ``polyp``, ``nodule``).
        layouts: accepted layouts, in order of preference.
        mask_threshold: for soft masks, the fraction of the format's maximum a mask value must
            exceed (0.5: above 127); None for any non-zero pixel (JPEG masks: above half).

    Raises:
        FileNotFoundError: the root is missing, matches no layout, has no image, or an image has
            no mask; the message names the root (or the missing file) and the expected layout.
    """

    def __init__(
        self,
        root: str,
        name: str,
        category: str,
        defect_type: str,
        layouts: Sequence[PairLayout],
        mask_threshold: float | None = None,
    ) -> None:
        super().__init__(
            root, name, pixel_labels=True, image_labels=False, mask_threshold=mask_threshold
        )
        expected = " or ".join(layout.describe() for layout in layouts)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {expected}")
        layout = next((lt for lt in layouts if (self.root / lt.images).is_dir()), None)
        if layout is None:
            raise FileNotFoundError(
                f"{name} root {self.root} is not in the {name} layout; expected {expected}"
            )
        images, masks = self.root / layout.images, self.root / layout.masks
        if not masks.is_dir():
            raise FileNotFoundError(
                f"{name}: mask folder {masks} is missing; expected {layout.describe()}"
            )
        files = list_images(images, recursive=False, allow_empty=True)
        if not files:
            raise FileNotFoundError(f"{name}: no images in {images}; expected {layout.describe()}")
        index = _index_by_name(masks)
        for image in files:
            first = layout.mask_ext or _own_mask_ext(image)
            mask = _find_mask(index, f"{image.stem}{layout.mask_suffix}", first)
            if mask is None:
                wanted = masks / f"{image.stem}{layout.mask_suffix}{first}"
                raise FileNotFoundError(
                    f"{name}: mask {wanted} for image {image} is missing "
                    f"(any of {', '.join(MASK_EXTENSIONS)} accepted); expected {layout.describe()}"
                )
            self.records.append(Record(image, mask, 1, category, defect_type))


def _index_by_name(folder: Path) -> dict[str, Path]:
    """``{lower-case file name: path}`` of a folder, listed once rather than probed per image."""
    return {p.name.lower(): p for p in folder.iterdir() if p.is_file()}


def _own_mask_ext(image: Path) -> str:
    own = image.suffix.lower()
    return own if own in MASK_EXTENSIONS else MASK_EXTENSIONS[0]


def _find_mask(index: dict[str, Path], stem: str, first_ext: str) -> Path | None:
    """The file ``stem`` + an extension in ``index``: ``first_ext``, then the usual formats."""
    for ext in dict.fromkeys((first_ext.lower(), *MASK_EXTENSIONS)):
        found = index.get(stem.lower() + ext)
        if found is not None:
            return found
    return None


class TwoFolderImageSet(EvalDataset):
    """An image-level set: a folder of normal images and one of anomalous images.

    Args:
        root: dataset root folder.
        name: dataset name in metric names.
        category: the set's single category.
        normal: normal folder name (``no``).
        anomalous: anomalous folder name (``yes``).
        defect_type: ``defect_type`` of the anomalous images; normal ones are ``good``.
        nested: sub-folders of the root also searched for the two folders (a download that
            wraps them in one more folder).

    Raises:
        FileNotFoundError: the root is missing, either folder is absent, or a folder is empty;
            the message names the root and the expected layout.
    """

    def __init__(
        self,
        root: str,
        name: str,
        category: str,
        normal: str = "no",
        anomalous: str = "yes",
        defect_type: str = "anomalous",
        nested: Sequence[str] = (),
    ) -> None:
        super().__init__(root, name, pixel_labels=False, image_labels=True)
        layout = f"<root>/{normal}/*.<ext> (normal) and <root>/{anomalous}/*.<ext> (anomalous)"
        if not self.root.is_dir():
            raise FileNotFoundError(f"{name} root {self.root} does not exist; expected {layout}")
        base = next(
            (
                b
                for b in (self.root, *(self.root / n for n in nested))
                if (b / normal).is_dir() and (b / anomalous).is_dir()
            ),
            None,
        )
        if base is None:
            raise FileNotFoundError(
                f"{name} root {self.root} has no {normal}/ and {anomalous}/ folders; "
                f"expected {layout}"
            )
        for folder, label, defect in ((normal, 0, "good"), (anomalous, 1, defect_type)):
            files = list_images(base / folder, recursive=False, allow_empty=True)
            if not files:
                raise FileNotFoundError(f"{name}: no images in {base / folder}; expected {layout}")
            self.records.extend(Record(f, None, label, category, defect) for f in files)
