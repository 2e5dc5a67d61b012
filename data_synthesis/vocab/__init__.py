"""Object, defect and background vocabulary for the diffusion generators (editable data files).

``objects.yaml`` maps each object name to its defect words and an optional ``texture`` flag;
``backgrounds.txt`` lists one background per line. :func:`load_vocabulary` reads and validates
both (defaulting to the files bundled next to this module) and names the file in every error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

VOCAB_DIR = Path(__file__).resolve().parent
DEFAULT_OBJECTS = VOCAB_DIR / "objects.yaml"
DEFAULT_BACKGROUNDS = VOCAB_DIR / "backgrounds.txt"


@dataclass(frozen=True)
class ObjectEntry:
    """One object of the vocabulary.

    Attributes:
        name: Object name as it appears in prompts.
        defects: Defect words for this object ("a {defect} {object}").
        texture: Surface texture: no background in normal prompts, all-ones foreground.
    """

    name: str
    defects: tuple[str, ...]
    texture: bool = False


@dataclass(frozen=True)
class Vocabulary:
    """Objects (in file order) and backgrounds, plus the files they came from (for messages)."""

    objects: dict[str, ObjectEntry]
    backgrounds: tuple[str, ...]
    objects_path: Path
    backgrounds_path: Path

    @property
    def names(self) -> list[str]:
        """Object names in file order (the order random draws index into)."""
        return list(self.objects)

    def entry(self, name: str) -> ObjectEntry:
        """Look up ``name``; raise a ValueError naming the vocabulary file if it is unknown."""
        if name not in self.objects:
            raise ValueError(
                f"object {name!r} is not in the vocabulary {self.objects_path} "
                f"(known: {', '.join(sorted(self.objects)[:10])}, ...)"
            )
        return self.objects[name]


def _words(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{path}: {where} must be a non-empty list of words, got {value!r}")
    if not all(isinstance(w, str) and w.strip() for w in value):
        raise ValueError(f"{path}: {where} must contain only non-empty strings, got {value!r}")
    return tuple(w.strip() for w in value)


def _parse_objects(data: Any, path: Path) -> dict[str, ObjectEntry]:
    if not isinstance(data, dict) or not isinstance(data.get("objects"), dict):
        raise ValueError(f"{path}: expected a top-level mapping 'objects: {{name: {{defects}}}}'")
    entries: dict[str, ObjectEntry] = {}
    for name, spec in data["objects"].items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{path}: object names must be non-empty strings, got {name!r}")
        if not isinstance(spec, dict):
            raise ValueError(
                f"{path}: object {name!r} must map to {{defects: [...]}}, got {spec!r}"
            )
        unknown = set(spec) - {"defects", "texture"}
        if unknown:
            raise ValueError(f"{path}: object {name!r} has unknown keys {sorted(unknown)}")
        texture = spec.get("texture", False)
        if not isinstance(texture, bool):
            raise ValueError(f"{path}: object {name!r}: texture must be true or false")
        defects = _words(spec.get("defects"), path, f"object {name!r}: defects")
        entries[name.strip()] = ObjectEntry(name.strip(), defects, texture)
    if not entries:
        raise ValueError(f"{path}: the 'objects' mapping is empty")
    return entries


def _read_backgrounds(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read backgrounds file {path}: {exc}") from exc
    words = tuple(s.strip() for s in lines if s.strip() and not s.strip().startswith("#"))
    if not words:
        raise ValueError(f"{path}: no backgrounds (one per line; '#' starts a comment)")
    return words


def load_vocabulary(
    path: str | Path | None = None, backgrounds: str | Path | None = None
) -> Vocabulary:
    """Read and validate the object/defect vocabulary and the background list.

    Args:
        path: Objects YAML file (see ``objects.yaml`` for the format); None = bundled file.
        backgrounds: Background list, one per line; None = bundled ``backgrounds.txt``.

    Returns:
        The parsed :class:`Vocabulary`.

    Raises:
        FileNotFoundError: If a file does not exist.
        ValueError: If a file is malformed; the message names the file and the bad entry.
    """
    import yaml  # PyYAML comes with omegaconf; imported here to keep module import light.

    obj_path = Path(path) if path is not None else DEFAULT_OBJECTS
    bg_path = Path(backgrounds) if backgrounds is not None else DEFAULT_BACKGROUNDS
    for p in (obj_path, bg_path):
        if not p.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {p}")
    try:
        data = yaml.safe_load(obj_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse vocabulary file {obj_path}: {exc}") from exc
    return Vocabulary(_parse_objects(data, obj_path), _read_backgrounds(bg_path), obj_path, bg_path)
