"""Data given as arrays: inline in the spec (`data.name = "inline"`, `data.X_train = ...`)
or from files (`data.name = "file"`): an `.npz` with arrays X_train, y_train, X_test,
y_test, or CSV files (`data.path` for training, `data.test_path` for test) whose last
column is the label, with or without a header row. Validated before anything compiles."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from jaxgd.errors import SpecError

ARRAY_NAMES = ("X_train", "y_train", "X_test", "y_test")


class GivenData:
    """Four float64 arrays, hashed by content so that they can sit among the static
    settings of a compiled program."""

    def __init__(self, arrays: dict[str, np.ndarray], source: str):
        self.arrays = tuple(arrays[k] for k in ARRAY_NAMES)
        self.source = source
        digest = hashlib.sha256()
        for a in self.arrays:
            digest.update(np.ascontiguousarray(a).tobytes() + str(a.shape).encode())
        self.digest = digest.hexdigest()

    @property
    def n(self) -> int:
        return len(self.arrays[1])

    @property
    def n_test(self) -> int:
        return len(self.arrays[3])

    @property
    def d(self) -> int:
        return self.arrays[0].shape[1]

    def __hash__(self) -> int:
        return hash(self.digest)

    def __eq__(self, other) -> bool:
        return isinstance(other, GivenData) and self.digest == other.digest

    def __repr__(self) -> str:
        return f"GivenData({self.source}, n={self.n}, n_test={self.n_test}, d={self.d})"


def validate(arrays: dict, source: str) -> GivenData:
    missing = [k for k in ARRAY_NAMES if k not in arrays]
    if missing:
        raise SpecError(f"{source}: missing {', '.join(missing)}; given data need {', '.join(ARRAY_NAMES)}")
    checked = {}
    for name in ARRAY_NAMES:
        try:
            a = np.asarray(arrays[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise SpecError(f"{source}: {name} is not an array of numbers") from None
        if name.startswith("y") and a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if name.startswith("X") and a.ndim == 1:
            a = a[:, None]
        want = 2 if name.startswith("X") else 1
        if a.ndim != want:
            raise SpecError(f"{source}: {name} has shape {a.shape}; expected {'(samples, features)' if want == 2 else '(samples,)'}")
        if a.shape[0] == 0:
            raise SpecError(f"{source}: {name} is empty")
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise SpecError(f"{source}: {name} has a NaN or inf value at index {tuple(int(i) for i in bad)}")
        checked[name] = a
    for split in ("train", "test"):
        X, y = checked[f"X_{split}"], checked[f"y_{split}"]
        if len(X) != len(y):
            raise SpecError(f"{source}: X_{split} has {len(X)} samples but y_{split} has {len(y)} labels")
    if checked["X_train"].shape[1] != checked["X_test"].shape[1]:
        raise SpecError(
            f"{source}: X_train has {checked['X_train'].shape[1]} features but X_test has {checked['X_test'].shape[1]}"
        )
    return GivenData(checked, source)


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file; expected a CSV of numbers") from None
    if lines and not _is_numeric_row(lines[0]):
        lines = lines[1:]  # a header
    if not lines:
        raise SpecError(f"{path}: no data rows")
    try:
        rows = [[float(v) for v in line.split(",")] for line in lines]
    except ValueError as err:
        raise SpecError(f"{path}: not a CSV of numbers ({err})") from None
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths == {1}:
        raise SpecError(f"{path}: rows must all have the same number (>= 2) of columns: features, then the label")
    table = np.array(rows)
    return table[:, :-1], table[:, -1]


def _is_numeric_row(line: str) -> bool:
    try:
        [float(v) for v in line.split(",")]
        return True
    except ValueError:
        return False


def from_files(path: str, test_path: str, base: Path | None = None) -> GivenData:
    """`.npz` (all four arrays) or a training CSV and a test CSV; relative paths are
    taken from `base` (the spec file's folder)."""
    resolve = lambda p: (base / p) if base is not None and not Path(p).is_absolute() else Path(p)
    if not path:
        raise SpecError("data.path: data.name = 'file' needs data.path (an .npz file, or a training CSV with data.test_path)")
    train = resolve(path)
    if not train.is_file():
        raise SpecError(f"data.path: file not found: {train}")
    if train.suffix == ".npz":
        try:
            with np.load(train) as archive:
                arrays = dict(archive)
        except (OSError, ValueError, TypeError, zipfile.BadZipFile) as err:  # not an .npz, or not of plain arrays
            raise SpecError(f"data.path: {train} is not an .npz file of numeric arrays {', '.join(ARRAY_NAMES)} "
                            f"({err})") from None
        return validate(arrays, str(train))
    if train.suffix == ".csv":
        if not test_path:
            raise SpecError("data.test_path: a training CSV needs a test CSV beside it (data.test_path)")
        test = resolve(test_path)
        if not test.is_file():
            raise SpecError(f"data.test_path: file not found: {test}")
        X_train, y_train = _read_csv(train)
        X_test, y_test = _read_csv(test)
        return validate(dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test), f"{train} + {test}")
    raise SpecError(f"data.path: got {path!r}; expected an .npz or .csv file")
