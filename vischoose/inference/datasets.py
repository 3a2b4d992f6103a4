"""Labelled image sets for evaluation: a folder of class sub-folders, or a CSV of path,label. No torch.

Folder names are the model's class ids (ImageNet synsets such as n01440764 for ImageNet-1k models, or the
label names in the model's config), class indices ("967") or unambiguous class names ("espresso",
"tiger_cat"); any other names need a label file mapping each folder name (or CSV label) to a class index or name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Protocol

from vischoose.errors import DatasetError, opt
from vischoose.inference.images import IMAGE_SUFFIXES, images_in_folder

_HEADER_NAMES = ("path", "file", "filename", "image", "image_path")
_LABELS_HINT = f"Pass {opt('labels')} FILE: one 'name,class' per line (class = index or class name), or a JSON object."


class Classes(Protocol):
    """What dataset reading needs from a classifier's labels (prediction.ClassLabels)."""

    ids: dict[int, str]
    labels: dict[int, str]


@dataclass(frozen=True)
class Sample:
    """One labelled image."""

    path: str
    target: int


@dataclass(frozen=True)
class LabelledImages:
    """The images of a data set with their class indices, in evaluation order."""

    source: str  # the folder or CSV file, absolute
    samples: tuple[Sample, ...]

    def fingerprint(self) -> str:
        """The image list and labels hashed (paths relative to the data set): 12 hex digits naming this data set."""
        import hashlib

        root = Path(self.source)
        base = root if root.is_dir() else root.parent
        lines = sorted(f"{_relative(s.path, base)}\t{s.target}" for s in self.samples)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]

    def limited(self, limit: int | None) -> "LabelledImages":
        """The first `limit` samples (folders are ordered round-robin over classes, so this stays balanced)."""
        return self if limit is None else LabelledImages(self.source, self.samples[:limit])


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(base).as_posix()
    except ValueError:  # a CSV row pointing outside its folder
        return Path(path).resolve().as_posix()


def check_source(path: str | Path) -> Path:
    """The data set path, checked to be a folder or a .csv file before any model is loaded.

    Raises:
        DatasetError: missing, or neither a folder nor a .csv file.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise DatasetError(f"Data set '{path}' does not exist.",
                           hint="Give a folder of class sub-folders, or a CSV file of path,label rows.")
    if not (source.is_dir() or (source.is_file() and source.suffix.lower() == ".csv")):
        raise DatasetError(f"Data set '{path}' is neither a folder nor a .csv file.",
                           hint="Give a folder of class sub-folders, or a CSV file of path,label rows.")
    return source.resolve()


def read_dataset(path: str | Path, classes: Classes, num_classes: int,
                 labels_file: str | Path | None = None) -> LabelledImages:
    """Read a folder of class sub-folders or a CSV of path,label into samples with class indices.

    Raises:
        DatasetError: no images, an unknown class name, a malformed CSV or label file.
    """
    source = check_source(path)
    mapping = read_label_map(labels_file) if labels_file else None
    resolver = _Resolver(classes, num_classes, mapping)
    samples = _read_folder(source, resolver) if source.is_dir() else _read_csv(source, resolver)
    if not samples:
        raise DatasetError(f"Data set '{path}' holds no images.",
                           hint=f"Image files end in {', '.join(IMAGE_SUFFIXES[:6])}, ...")
    return LabelledImages(str(source), tuple(samples))


def read_label_map(path: str | Path) -> dict[str, str]:
    """A label file: a JSON object, or lines 'name,class' (tab or space also separate); # starts a comment.

    Raises:
        DatasetError: the file is missing or a line has no class.
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"Label file '{path}' cannot be read ({err.__class__.__name__}: {err}).") from err
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise DatasetError(f"Label file '{path}' is not valid JSON ({err}).") from err
        if not isinstance(data, dict):
            raise DatasetError(f"Label file '{path}' must hold a JSON object of name -> class.")
        return {str(k): str(v) for k, v in data.items()}
    mapping = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sep = "\t" if "\t" in line else ("," if "," in line else None)
        name, target = (line.split(sep, 1) + [""])[:2] if sep else (line.split(None, 1) + [""])[:2]
        if not target.strip():
            raise DatasetError(f"{path}:{number}: expected 'name,class' but found '{line}'.")
        mapping[name.strip()] = target.strip()
    return mapping


class _Resolver:
    """Class names, ids and indices -> class index, for one model's classes and an optional label map."""

    def __init__(self, classes: Classes, num_classes: int, mapping: dict[str, str] | None) -> None:
        self.classes, self.num_classes, self.mapping = classes, num_classes, mapping
        self.by_id = {name: index for index, name in classes.ids.items()}

    def folder(self, name: str, where: Path) -> int:
        if self.mapping is not None:
            if name not in self.mapping:
                raise DatasetError(f"Folder '{name}' in {where} is not in the label file.", hint=_LABELS_HINT)
            return self.target(self.mapping[name], f"label file entry '{name}'")
        if name in self.by_id:
            return self.by_id[name]
        spoken = name.replace("_", " ")
        if name.isdigit() or self._label_matches(spoken):  # a class index ("967") or name ("espresso", "tiger_cat")
            return self.target(name if name.isdigit() else spoken, f"Folder '{name}' in {where}")
        raise DatasetError(f"Folder '{name}' in {where} is not a class of this model (expected ImageNet synset "
                           "folder names such as n01440764, class indices or class names).", hint=_LABELS_HINT)

    def target(self, value: str, where: str) -> int:
        value = value.strip()
        if self.mapping is not None and value in self.mapping:
            value = self.mapping[value].strip()
        if value.lstrip("-").isdigit():
            index = int(value)
            if not 0 <= index < self.num_classes:
                raise DatasetError(f"{where}: class index {index} is outside 0..{self.num_classes - 1}.")
            return index
        if value in self.by_id:
            return self.by_id[value]
        return self._by_label(value, where)

    def _label_matches(self, value: str) -> list[int]:
        wanted = value.lower()
        return [i for i, label in self.classes.labels.items()
                if wanted == label.lower() or wanted in (s.strip().lower() for s in label.split(","))]

    def _by_label(self, value: str, where: str) -> int:
        found = self._label_matches(value)
        if len(found) == 1:
            return found[0]
        if found:
            choices = ", ".join(f"{i} ({self.classes.ids.get(i, self.classes.labels[i])})" for i in found[:5])
            raise DatasetError(f"{where}: class name '{value}' is ambiguous: {choices}.",
                               hint="Use the class index or the synset id instead.")
        raise DatasetError(f"{where}: '{value}' is not a class of this model (not an index, id or class name).",
                           hint=_LABELS_HINT)


def _read_folder(source: Path, resolver: _Resolver) -> list[Sample]:
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = images_in_folder(source)
        if loose:
            raise DatasetError(f"Data set '{source}' holds images but no class sub-folders.",
                               hint="Put each class's images in a sub-folder named after the class, "
                                    "or give a CSV file of path,label rows.")
        return []
    per_class = [[Sample(str(p), resolver.folder(folder.name, source)) for p in images_in_folder(folder)]
                 for folder in folders]
    # round-robin over classes, so that --limit N keeps every class in
    return [s for group in zip_longest(*per_class) for s in group if s is not None]


def _read_csv(source: Path, resolver: _Resolver) -> list[Sample]:
    samples = []
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            for number, row in enumerate(csv.reader(fh), start=1):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if number == 1 and row[0].strip().lower() in _HEADER_NAMES:
                    continue
                if len(row) < 2 or not row[1].strip():
                    raise DatasetError(f"{source}:{number}: expected 'path,label' but found '{','.join(row)}'.")
                path = Path(row[0].strip()).expanduser()
                path = path if path.is_absolute() else source.parent / path
                samples.append(Sample(str(path), resolver.target(row[1], f"{source}:{number}")))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"Data set '{source}' cannot be read as CSV ({err}).") from err
    return samples
