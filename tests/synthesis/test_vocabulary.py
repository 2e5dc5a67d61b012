"""The bundled synthesis vocabulary stays zero-shot, broad, and is phrased as the method says.

Zero-shot: nothing the model trains on may be named after an evaluation benchmark. The object
names and backgrounds must not name any benchmark's object category, and the defect words must
not be a benchmark's own defect labels. Name matching is by whole words after lower-casing,
treating ``_`` and ``-`` as spaces and reducing simple plurals, so "Metal_Nuts", "glass bottle"
and "bent-lead" are all caught.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from anomalyvfm.data.datasets import headct, ksdd, ksdd2, mtd
from data_synthesis.inpaint import DiffusionInpaintGenerator
from data_synthesis.normals import NormalImageGenerator
from data_synthesis.stages import AnomaliesStage
from data_synthesis.vocab import Vocabulary, load_vocabulary


def _names(text: str) -> tuple[str, ...]:
    """Whitespace-separated names (keeps the long lists below readable)."""
    return tuple(text.split())


# Categories the loaders fix in code (constants and the names passed to the base classes).
CODE_CATEGORIES = (
    headct.CATEGORY,
    ksdd.CATEGORY,
    ksdd2.CATEGORY,
    mtd.CATEGORY,
    "br35h",
    "brainmri",
    "isic",
    "kvasir",
    "endo",
    "tn3k",
    "cvc_clinicdb",
    "cvc_colondb",
)
# Categories the loaders find as folders or JSON files, as the benchmarks ship them.
MVTEC_AD = _names(
    "bottle cable capsule carpet grid hazelnut leather metal_nut pill screw tile toothbrush "
    "transistor wood zipper"
)
VISA = _names(
    "candle capsules cashew chewinggum fryum macaroni1 macaroni2 pcb1 pcb2 pcb3 pcb4 pipe_fryum"
)
MPDD = _names("bracket_black bracket_brown bracket_white connector metal_plate tubes")
BTAD = ("01", "02", "03")
REAL_IAD = _names(
    "audiojack bottle_cap button_battery end_cap eraser fire_hood mint mounts pcb phone_battery "
    "plastic_nut plastic_plug porcelain_doll regulator rolled_strip_base sim_card_set switch tape "
    "terminalblock toothbrush toy toy_brick transistor1 u_block usb usb_adaptor vcpill "
    "wooden_beads woodstick zipper"
)
DAGM = tuple(f"Class{i}" for i in range(1, 11))
DTD_SYNTHETIC = _names(
    "Blotchy_099 Fibrous_183 Marbled_078 Matted_069 Mesh_114 Perforated_037 Stratified_154 "
    "Woven_001 Woven_068 Woven_104 Woven_125 Woven_127"
)
# What the single-category sets show, plain-word spellings of the concatenated names, and the
# product several categories are kinds of (brackets, nuts, circuit boards).
DESCRIBED = (
    "electrical commutator",
    "commutator",
    "magnetic tile",
    "brain",
    "brain mri",
    "head ct",
    "skin lesion",
    "lesion",
    "colon polyp",
    "polyp",
    "thyroid nodule",
    "nodule",
    "chewing gum",
    "audio jack",
    "terminal block",
    "wood stick",
    "sim card",
    "bracket",
    "circuit board",
    "printed circuit board",
    "nut",
)
BENCHMARK_CATEGORIES = (
    CODE_CATEGORIES + MVTEC_AD + VISA + MPDD + BTAD + REAL_IAD + DAGM + DTD_SYNTHETIC + DESCRIBED
)
# MVTec AD's texture categories are also ordinary materials. They may appear qualified as a
# material ("oak wood", "pebbled leather"), never as a bare name.
MATERIALS = frozenset({"wood", "leather", "tile", "carpet", "grid"})

# Defect labels coined by one benchmark: they name a part of its product (lead, case, insulation,
# teeth, thread, head, neck), an assembly state (flipped, misplaced, swapped, missing, combined,
# wrong type) or an annotator's label for one product (squeezed, glue strip, gray stroke, rough,
# oil, print, liquid, fold, poke). Single-category sets label their defects by the condition
# (tumor, hemorrhage, polyp, nodule) or the casting flaw (blowhole); those are listed too.
BENCHMARK_DEFECTS = _names(
    # MVTec AD
    "broken_large broken_small bent_wire cable_swap combined cut_inner_insulation "
    "cut_outer_insulation missing_cable missing_wire poke_insulation insulation faulty_imprint "
    "imprint misprint misprinted poke poked squeeze squeezed squeezed_teeth color colour "
    "metal_contamination thread thread_side thread_top glue glued glue_strip gray_stroke oil "
    "rough print fold folded flip flipped manipulated_front scratch_head scratch_neck pill_type "
    "defective bent_lead cut_lead damaged_case misplaced broken_teeth split_teeth teeth tooth "
    "fabric_border fabric_interior liquid "
    # VisA
    "missing extra wrong_place stuck_together middle_breakage corner_missing corner_breakage "
    "edge_breakage colour_spot color_spot extra_wax missing_wax wax wick foreign_particle "
    # MPDD
    "parts_mismatch mismatch bend_and_parts_mismatch defective_painting major_rust total_rust "
    "anomalous "
    # BTAD, Real-IAD (its letter codes and label names), MTD, the medical sets, placeholders
    "ko ak bx ch hs ps qs yw zw missing_parts foreign foreign_object blowhole tumor tumour "
    "hemorrhage lesion polyp nodule defect anomaly bad good"
)
# Words every defect taxonomy uses for damage in general, not one benchmark's: they stay allowed
# although some benchmarks also use them as labels (crack, scratch, hole, cut, bent, broken...).
GENERIC_DEFECTS = _names(
    "scratched cracked holed stained dented rusty cut bent broken chipped torn worn corroded "
    "burnt pitted deformed frayed split"
)
COLOURS = frozenset(
    _names(
        "white black gray grey beige cream blue green red yellow orange brown pink purple teal "
        "navy maroon ivory silver gold"
    )
)
COLOUR_FILLER = frozenset(
    _names("a an the plain solid light dark pale bright colour color background")
)


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith(("ses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


def words(text: str) -> tuple[str, ...]:
    """Lower-cased words of ``text`` (``_``, ``-`` and other separators split), singular."""
    return tuple(_singular(w) for w in re.split(r"[^0-9a-z]+", text.lower()) if w)


def _phrases(category: str) -> set[tuple[str, ...]]:
    """The category's words, and the same without trailing numbers ("pcb1", "Woven_001")."""
    base = words(category)
    stripped = tuple(w for w in (re.sub(r"\d+$", "", w) for w in base) if w)
    return {p for p in (base, stripped) if p}


def _contains(name: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    k = len(phrase)
    return any(name[i : i + k] == phrase for i in range(len(name) - k + 1))


def category_hits(name: str, categories: tuple[str, ...] = BENCHMARK_CATEGORIES) -> list[str]:
    """The benchmark categories ``name`` names (materials only when the name is bare)."""
    name_words = words(name)
    hits = []
    for category in categories:
        for phrase in _phrases(category):
            same = "".join(name_words) == "".join(phrase)
            inside = _contains(name_words, phrase) and " ".join(phrase) not in MATERIALS
            if same or inside:
                hits.append(category)
                break
    return hits


def defect_hits(defect: str, labels: tuple[str, ...] = BENCHMARK_DEFECTS) -> list[str]:
    """The benchmark-specific defect labels ``defect`` contains, as whole words."""
    defect_words = words(defect)
    return [
        label
        for label in labels
        if _contains(defect_words, words(label)) or "".join(defect_words) == "".join(words(label))
    ]


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return load_vocabulary()


def test_matching_catches_renamed_categories_and_labels() -> None:
    assert category_hits("Metal_Nuts") == ["metal_nut", "nut"]
    assert category_hits("glass bottle") == ["bottle"]
    assert category_hits("chewing-gum") == ["chewinggum", "chewing gum"]
    assert category_hits("pcb") == ["pcb1", "pcb2", "pcb3", "pcb4", "pcb"]
    assert category_hits("woven") == [f"Woven_{n}" for n in ("001", "068", "104", "125", "127")]
    assert category_hits("Wood") == ["wood"] and category_hits("tiles") == ["tile"]
    for name in ("oak wood", "pebbled leather", "walnut", "pillow", "stapler", "peanut butter"):
        assert category_hits(name) == [], name
    assert defect_hits("bent-lead") == ["bent_lead"]
    assert defect_hits("Squeezed") == ["squeezed"]
    assert defect_hits("missing tooth") == ["tooth", "missing"]
    assert defect_hits("cracked") == defect_hits("scratched") == []


def test_benchmark_lists_are_complete_and_generic_words_are_not_banned() -> None:
    assert len(MVTEC_AD) == 15 and len(VISA) == 12 and len(REAL_IAD) == 30 and len(MPDD) == 6
    assert len(DTD_SYNTHETIC) == 12 and len(DAGM) == 10
    assert set(CODE_CATEGORIES) >= {"headct", "ksdd", "ksdd2", "mtd"}
    banned = {words(label) for label in BENCHMARK_DEFECTS}
    assert not banned & {words(w) for w in GENERIC_DEFECTS}


def test_no_object_or_background_names_a_benchmark_category(vocab: Vocabulary) -> None:
    named = {n: category_hits(n) for n in [*vocab.names, *vocab.backgrounds]}
    assert {n: hits for n, hits in named.items() if hits} == {}


def test_no_defect_word_is_a_benchmark_label(vocab: Vocabulary) -> None:
    bad = {
        (entry.name, defect): defect_hits(defect)
        for entry in vocab.objects.values()
        for defect in entry.defects
        if defect_hits(defect)
    }
    assert bad == {}


def test_vocabulary_is_broad(vocab: Vocabulary) -> None:
    n = len(vocab.objects)
    textures = sum(e.texture for e in vocab.objects.values())
    assert (n, textures, len(vocab.backgrounds)) == (105, 35, 52)
    assert n >= 90 and 0.25 <= textures / n <= 0.5 and len(vocab.backgrounds) >= 45
    assert len(set(vocab.backgrounds)) == len(vocab.backgrounds)
    for entry in vocab.objects.values():
        assert len(set(entry.defects)) == len(entry.defects) >= 3, entry.name
    used = {d for e in vocab.objects.values() for d in e.defects}
    assert {"scratched", "cracked", "stained", "dented", "rusty", "torn"} <= used


def test_backgrounds_are_scenes_not_plain_colours(vocab: Vocabulary) -> None:
    def plain(background: str) -> bool:
        return not set(re.split(r"[^a-z]+", background.lower())) - COLOURS - COLOUR_FILLER - {""}

    assert plain("a white background") and plain("Light Gray") and not plain("black velvet")
    assert [b for b in vocab.backgrounds if plain(b)] == []


def test_prompts_call_textures_textures_and_keep_the_background(vocab: Vocabulary) -> None:
    normals = NormalImageGenerator(pipeline=object())
    kinds = set()
    for seed in range(40):
        prompt, p = normals.sample_prompt(np.random.default_rng(seed))
        kinds.add(p["texture"])
        if p["texture"]:
            assert prompt == (
                f"a close-up photo of a {p['object']} texture for industrial visual inspection. "
                "Top down view. Centered."
            )
        else:
            assert prompt == (
                f"a close-up photo of a {p['object']} for industrial visual inspection. "
                f"Top down view. Centered. {p['background']} background."
            )
    assert kinds == {False, True}  # both templates were exercised

    inpaint = DiffusionInpaintGenerator(pipeline=object())
    img = np.full((32, 32, 3), 0.8, np.float32)
    img[8:20, 10:24] = (0.2, 0.3, 0.6)
    given = inpaint._plan(img, np.random.default_rng(0), "apple", None, 0, "cobblestone street")
    assert given["prompt"] == (
        f"a close-up photo of a {given['defect']} apple for industrial visual inspection. "
        "Top down view. Centered. cobblestone street background."
    )
    assert (given["background"], given["background_drawn"]) == ("cobblestone street", False)
    drawn = inpaint._plan(img, np.random.default_rng(0), "apple", None, 0)
    assert drawn["background_drawn"] and drawn["background"] in vocab.backgrounds
    assert drawn["prompt"].endswith(f"Centered. {drawn['background']} background.")
    texture = inpaint._plan(img, np.random.default_rng(0), "concrete", None, 0, "hay bale")
    assert texture["prompt"] == (
        f"a close-up photo of a {texture['defect']} concrete texture for industrial visual "
        "inspection. Top down view. Centered."
    )
    assert (texture["background"], texture["background_drawn"]) == (None, False)


def test_anomalies_stage_hands_each_normal_background_to_the_defect_prompt(
    tmp_path: Path,
) -> None:
    spec = {"class_path": "DiffusionInpaintGenerator", "init_args": {"pipeline": object()}}
    stage = AnomaliesStage(tmp_path, 0, spec)
    gen = stage.generator
    gen._run = lambda size, imgs, plans: list(imgs)  # no diffusion: return the input pixels
    img = np.full((32, 32, 3), 0.8, np.float32)
    img[8:20, 10:24] = (0.2, 0.3, 0.6)
    normals = [
        {"object": "apple", "background": "gravel path"},
        {"object": "concrete", "background": None},
    ]
    items = [{"index": i, "image": img, "normal_params": p} for i, p in enumerate(normals)]
    apple, concrete = (a.params for a in stage._generate(items))
    assert apple["prompt"].endswith("Centered. gravel path background.")
    assert apple["background"] == "gravel path" and not apple["background_drawn"]
    assert concrete["prompt"].endswith(
        "concrete texture for industrial visual inspection. Top down view. Centered."
    )
    with pytest.raises(ValueError, match="1 backgrounds"):
        gen.generate([img, img], [np.random.default_rng(0)] * 2, backgrounds=["gravel path"])
