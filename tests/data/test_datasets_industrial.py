"""Industrial test-set readers on tiny fixtures written in each dataset's real layout."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalyvfm.data.datasets.base import EvalDataset
from anomalyvfm.data.datasets.btad import BTAD
from anomalyvfm.data.datasets.dagm import DAGM
from anomalyvfm.data.datasets.dtd_synthetic import DTDSynthetic
from anomalyvfm.data.datasets.folder import FolderDataset
from anomalyvfm.data.datasets.ksdd import KSDD
from anomalyvfm.data.datasets.ksdd2 import KSDD2
from anomalyvfm.data.datasets.realiad import RealIAD
from anomalyvfm.data.datasets.visa import VisA
from tests.data.btad import data as btad_data
from tests.data.dagm import data as dagm_data
from tests.data.dtd_synthetic import data as dtd_data
from tests.data.folder import data as folder_data
from tests.data.ksdd import data as ksdd_data
from tests.data.ksdd2 import data as ksdd2_data
from tests.data.realiad import data as realiad_data
from tests.data.visa import data as visa_data

Factory = Callable[[Path], EvalDataset]
WRITERS: dict[str, Callable[[Path], Path]] = {
    "visa": visa_data.write,
    "visa_mvtec": lambda root: visa_data.write(root, layout="mvtec"),
    "realiad": realiad_data.write,
    "btad": btad_data.write,
    "ksdd": ksdd_data.write,
    "ksdd2": ksdd2_data.write,
    "dagm": dagm_data.write,
    "dtd_synthetic": dtd_data.write,
    "folder": folder_data.write,
}
FACTORIES: dict[str, Factory] = {
    "visa": lambda root: VisA(str(root)),
    "visa_mvtec": lambda root: VisA(str(root)),
    "realiad": lambda root: RealIAD(str(root)),
    "btad": lambda root: BTAD(str(root)),
    "ksdd": lambda root: KSDD(str(root)),
    "ksdd2": lambda root: KSDD2(str(root)),
    "dagm": lambda root: DAGM(str(root)),
    "dtd_synthetic": lambda root: DTDSynthetic(str(root)),
    "folder": lambda root: FolderDataset(
        "normal", "abnormal", "masks", "parts", "folder", mask_suffix="_mask", root=str(root)
    ),
}
VISA_COUNTS = {c: (s[3], s[4]) for c, s in visa_data.SHAPES.items()}
# {category: (normal, anomalous)} of each fixture, from the writers' own tables.
COUNTS: dict[str, dict[str, tuple[int, int]]] = {
    "visa": VISA_COUNTS,
    "visa_mvtec": VISA_COUNTS,
    "realiad": {"audiojack": (1, 2), "pcb": (2, 1)},  # single view: C1 of the test samples
    "btad": {c: (p[5], p[6]) for c, p in btad_data.PRODUCTS.items()},
    "ksdd": {"ksdd": (24 - len(ksdd_data.DEFECTIVE), len(ksdd_data.DEFECTIVE))},
    "ksdd2": {"ksdd2": (4, 2)},
    "dagm": {
        c: (s["Test"][0] - len(s["Test"][1]), len(s["Test"][1]))
        for c, s in dagm_data.CLASSES.items()
    },
    "dtd_synthetic": {t: (n[1], n[2]) for t, n in sorted(dtd_data.TEXTURES.items())},
    "folder": {"parts": (folder_data.NUM_NORMAL, folder_data.NUM_ABNORMAL)},
}
NAMES = list(FACTORIES)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: write(tmp_path_factory.mktemp(name)) for name, write in WRITERS.items()}


def _counts(ds: EvalDataset) -> dict[str, tuple[int, int]]:
    c = collections.Counter((r.category, r.label) for r in ds.records)
    return {cat: (c[cat, 0], c[cat, 1]) for cat in ds.categories}


@pytest.mark.parametrize("name", NAMES)
def test_counts_per_category_and_order(name: str, roots: dict[str, Path]) -> None:
    ds = FACTORIES[name](roots[name])
    assert _counts(ds) == COUNTS[name]
    assert ds.categories == list(COUNTS[name])
    again = FACTORIES[name](roots[name])
    assert [r.image_path for r in again.records] == [r.image_path for r in ds.records]
    if name != "folder":  # the folder set lists normals, then anomalies
        for cat in ds.categories:
            paths = [r.image_path for r in ds.records if r.category == cat]
            assert paths == sorted(paths)


@pytest.mark.parametrize("name", NAMES)
def test_labels_masks_and_samples(name: str, roots: dict[str, Path]) -> None:
    ds = FACTORIES[name](roots[name])
    ds.check_files()  # the start-up check passes on every layout as distributed
    for i, rec in enumerate(ds.records):
        assert (rec.mask_path is not None) == (rec.label == 1)
        sample = ds[i]
        with Image.open(rec.image_path) as im:
            assert sample["image"].shape == (3, im.height, im.width)
        assert int(sample["label"]) == rec.label and sample["category"] == rec.category
        if rec.mask_path is None:
            assert sample["mask"].sum() == 0
            continue
        raw = np.asarray(Image.open(rec.mask_path).convert("L"))
        if name == "visa":  # label values, not 255: any non-zero pixel is anomalous
            assert set(np.unique(raw)) <= {0, 1, 2} and raw.max() > 0
        else:
            assert set(np.unique(raw)) == {0, 255}
        assert np.array_equal(sample["mask"].numpy() > 0, raw > 0)


def test_visa_layouts_give_the_same_records_and_masks(roots: dict[str, Path]) -> None:
    official, relayout = VisA(str(roots["visa"])), VisA(str(roots["visa_mvtec"]))
    assert (official.layout, relayout.layout) == ("split_csv", "mvtec")
    pairs = list(zip(official.records, relayout.records, strict=True))
    for a, b in pairs:
        assert (a.image_path.name, a.label, a.category, a.defect_type) == (
            b.image_path.name,
            b.label,
            b.category,
            b.defect_type,
        )
    for i, (a, _) in enumerate(pairs):
        if a.label:
            assert np.array_equal(official[i]["mask"].numpy(), relayout[i]["mask"].numpy())
    # Only the CSV's test rows: the training normals (0000, 0001 of candle) are not records.
    assert not any(r.image_path.name == "0000.JPG" for r in official.records)
    forced = VisA(str(roots["visa_mvtec"]), layout="mvtec", categories=["pcb1"])
    assert forced.categories == ["pcb1"]


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("visa", ["pcb1"]),
        ("visa_mvtec", ["pcb1", "candle"]),
        ("realiad", ["pcb"]),
        ("btad", ["03", "01"]),
        ("dagm", ["Class10"]),
        ("dtd_synthetic", ["Woven_001"]),
    ],
)
def test_categories_selection(name: str, wanted: list[str], roots: dict[str, Path]) -> None:
    cls = type(FACTORIES[name](roots[name]))
    ds = cls(str(roots[name]), categories=wanted)  # type: ignore[call-arg]
    assert ds.categories == wanted
    assert _counts(ds) == {c: COUNTS[name][c] for c in wanted}
    with pytest.raises(FileNotFoundError, match=r"categories \['nope'\] not found"):
        cls(str(roots[name]), categories=["nope"])  # type: ignore[call-arg]


# dataset -> (a fixture of another layout, a fragment of the expected layout in the message)
WRONG_LAYOUT = {
    "visa": ("ksdd", r"neither VisA layout; expected either .*1cls.csv.*ground_truth/bad"),
    "visa_mvtec": ("btad", r"has no 'good' folder; expected"),
    "realiad": ("dagm", r"realiad_1024 is missing .*expected <root>/realiad_<resolution>"),
    "btad": ("dtd_synthetic", r"has no 'ok' folder; expected <root>/\{01,02,03\}/test/\{ok,ko\}"),
    "ksdd": ("ksdd2", r"has no kos<NN>/\*.jpg images; expected <root>/kos<NN>/Part<k>.jpg"),
    "ksdd2": ("ksdd", r"has no test folder; expected <root>/test/<id>.png"),
    "dagm": ("btad", r"has no Class<k>/Test folders; expected <root>/Class<k>/Test"),
    "dtd_synthetic": ("btad", r"has no 'good' folder; expected <root>/<Texture_NNN>/test"),
    "folder": ("dagm", r"folder .*normal does not exist; expected <normal_dir>"),
}


@pytest.mark.parametrize("name", NAMES)
def test_wrong_root_names_root_and_layout(
    name: str, roots: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))) as err:
        FACTORIES[name](missing)
    assert "expected" in str(err.value)
    other, fragment = WRONG_LAYOUT[name]
    with pytest.raises(FileNotFoundError, match=fragment) as err:
        FACTORIES[name](roots[other])
    assert str(roots[other]) in str(err.value)


# dataset -> a mask of the fixture (relative to its root) to delete
MASKS = {
    "visa": "pcb1/Data/Masks/Anomaly/001.png",
    "visa_mvtec": "candle/ground_truth/bad/001.png",
    "realiad": "realiad_1024/pcb/NG/AK/S0004/pcb_0004_NG_AK_C1_20230922090400.png",
    "btad": "03/ground_truth/ko/0004.bmp",
    "ksdd": "kos02/Part3_label.bmp",
    "ksdd2": "test/20002_GT.png",
    "dagm": "Class10/Test/Label/0003_label.PNG",
    "dtd_synthetic": "Woven_001/ground_truth/bad/002_mask.png",
    "folder": "masks/defect_01_mask.png",
}


@pytest.mark.parametrize("name", NAMES)
def test_missing_mask_names_the_file(name: str, tmp_path: Path) -> None:
    root = WRITERS[name](tmp_path / name)
    mask = root / MASKS[name]
    mask.unlink()
    # The message names the file (BTAD and DTD-Synthetic list each accepted extension / name).
    with pytest.raises(FileNotFoundError, match=f"mask {re.escape(str(mask.with_suffix('')))}"):
        FACTORIES[name](root)


def test_realiad_json_sets_and_ok_views_under_ng(roots: dict[str, Path], tmp_path: Path) -> None:
    multi = RealIAD(str(roots["realiad"]), json_set="realiad_jsons")
    assert _counts(multi) == {"audiojack": (4, 2), "pcb": (5, 1)}
    hidden = [r for r in multi.records if "/NG/" in r.image_path.as_posix() and r.label == 0]
    assert len(hidden) == 3 and all(r.mask_path is None and r.defect_type == "OK" for r in hidden)
    assert {r.defect_type for r in multi.records if r.label} == {"HS", "QS", "AK"}
    # A copy with the JSON folder moved up one level (<root>/realiad_jsons_sv) reads the same.
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "realiad_1024").symlink_to(roots["realiad"] / "realiad_1024")
    (flat / "realiad_jsons_sv").symlink_to(roots["realiad"] / "realiad_jsons" / "realiad_jsons_sv")
    assert _counts(RealIAD(str(flat))) == COUNTS["realiad"]
    with pytest.raises(FileNotFoundError, match="realiad_256 is missing"):
        RealIAD(str(roots["realiad"]), resolution=256)
    with pytest.raises(FileNotFoundError, match="no JSON split in .*realiad_jsons_fuiad_0.4"):
        RealIAD(str(roots["realiad"]), json_set="realiad_jsons_fuiad_0.4")


def test_realiad_anomalous_entry_without_mask_path_fails(tmp_path: Path) -> None:
    root = realiad_data.write(tmp_path / "r")
    path = root / "realiad_jsons" / "realiad_jsons_sv" / "pcb.json"
    data = json.loads(path.read_text())
    next(e for e in data["test"] if e["anomaly_class"] == "AK")["mask_path"] = None
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"anomalous image .*pcb_0004_NG_AK_C1.* has no mask_path"):
        RealIAD(str(root))


def test_btad_masks_keep_each_products_extension(roots: dict[str, Path]) -> None:
    ds = BTAD(str(roots["btad"]))
    exts = {
        (r.category, r.image_path.suffix, r.mask_path.suffix) for r in ds.records if r.mask_path
    }
    assert exts == {("01", ".bmp", ".png"), ("02", ".png", ".png"), ("03", ".bmp", ".bmp")}


def test_ksdd_label_is_any_nonzero_mask_pixel(tmp_path: Path) -> None:
    root = ksdd_data.write(tmp_path / "k")
    defective = {
        (r.image_path.parent.name, r.image_path.stem) for r in KSDD(str(root)).records if r.label
    }
    assert defective == {(f, f"Part{p}") for f, p in ksdd_data.DEFECTIVE}
    mask = np.zeros((ksdd_data.HEIGHT, ksdd_data.WIDTH), np.uint8)
    mask[7, 5] = 1  # one faint pixel makes a part defective, with exactly that pixel
    Image.fromarray(mask).save(root / "kos03" / "Part6_label.bmp")
    ds = KSDD(str(root))
    i = next(i for i, r in enumerate(ds.records) if r.image_path == root / "kos03" / "Part6.jpg")
    assert ds.records[i].label == 1
    assert ds[i]["mask"].sum() == 1 and ds[i]["mask"][7, 5] == 1


def test_dagm_labels_come_from_labels_txt(tmp_path: Path) -> None:
    root = dagm_data.write(tmp_path / "d")
    ds = DAGM(str(root), categories=["Class1"])
    assert [r.label for r in ds.records] == [1, 0, 0, 1]
    labels = root / "Class2" / "Test" / "Label" / "Labels.txt"
    labels.unlink()
    with pytest.raises(FileNotFoundError, match=f"label file {re.escape(str(labels))} is missing"):
        DAGM(str(root))


def test_folder_dataset_options(tmp_path: Path) -> None:
    root = folder_data.write(tmp_path / "f", mask_suffix="")
    image_level = FolderDataset(str(root / "normal"), str(root / "abnormal"))
    assert not image_level.pixel_labels and image_level.categories == ["folder"]
    assert all(r.mask_path is None for r in image_level.records)
    assert [r.label for r in image_level.records] == [0] * 4 + [1] * 3
    same_stem = FolderDataset("normal", "abnormal", "masks", root=str(root))
    assert same_stem.pixel_labels and same_stem[5]["mask"].sum() == 25
    # Masks beside their images, told apart by the suffix.
    beside = folder_data.write(tmp_path / "b")
    for mask in (beside / "masks").iterdir():
        mask.rename(beside / "abnormal" / mask.name)
    ds = FolderDataset("normal", "abnormal", "abnormal", mask_suffix="_mask", root=str(beside))
    assert _counts(ds) == {"folder": (4, 3)}
    Image.new("L", (32, 32)).save(root / "masks" / "defect_00.bmp")
    with pytest.raises(ValueError, match="defect_00.png matches several masks"):
        FolderDataset("normal", "abnormal", "masks", root=str(root))
