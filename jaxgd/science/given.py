"""Data given as arrays: inline in the spec (`data.name = "inline"`, `data.X_train = ...`)
or from files (`data.name = "file"`): an `.npz` with arrays X_train, y_train, X_test,
y_test, or CSV files (`data.path` for training, `data.test_path` for test) whose last
column is the label, with a header row or not (`data.header`). Validated before anything
compiles: real numbers only, at least one feature, every value finite in the run's float
type; a file that cannot be read gets one line naming it."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np

from jaxgd.errors import SpecError

ARRAY_NAMES = ("X_train", "y_train", "X_test", "y_test")
REAL_KINDS = "biuf"  # numpy kinds taken as numbers: bool, integers, floats (not complex, dates, text, objects)
HEADERS = ("auto", "true", "false")  # data.header: auto skips a first row with no number in it


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


def validate(arrays: dict, source: str, dtype: str = "float64") -> GivenData:
    """The four arrays checked (shapes, real numbers, finite in `dtype`, the run's float type)."""
    missing = [k for k in ARRAY_NAMES if k not in arrays]
    if missing:
        raise SpecError(f"{source}: missing {', '.join(missing)}; given data need {', '.join(ARRAY_NAMES)}")
    largest = np.finfo(dtype).max
    checked = {}
    for name in ARRAY_NAMES:
        try:
            raw = np.asarray(arrays[name])
        except (TypeError, ValueError):  # ragged nested lists
            raise SpecError(f"{source}: {name} is not an array of numbers") from None
        if raw.dtype.kind not in REAL_KINDS:
            raise SpecError(f"{source}: {name} holds {raw.dtype} values; expected real numbers")
        a = raw.astype(np.float64)
        if name.startswith("y") and a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if name.startswith("X") and a.ndim == 1:
            a = a[:, None]
        want = 2 if name.startswith("X") else 1
        if a.ndim != want:
            raise SpecError(f"{source}: {name} has shape {a.shape}; expected {'(samples, features)' if want == 2 else '(samples,)'}")
        if a.shape[0] == 0:
            raise SpecError(f"{source}: {name} is empty")
        if a.ndim == 2 and a.shape[1] == 0:
            raise SpecError(f"{source}: {name} has no features (shape {a.shape}); expected at least one")
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise SpecError(f"{source}: {name} has a NaN or inf value at index {tuple(int(i) for i in bad)}")
        if (np.abs(a) > largest).any():
            bad = np.argwhere(np.abs(a) > largest)[0]
            raise SpecError(f"{source}: {name} has the value {a[tuple(bad)]:g} at index {tuple(int(i) for i in bad)}, "
                            f"which is inf in {dtype} (largest {largest:.4g})")
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


def _read_csv(path: Path, header: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file; expected a CSV of numbers") from None
    if lines and (header == "true" or (header == "auto" and _numbers_in(lines[0]) == 0)):
        if header == "auto":
            print(f"jaxgd: {path}: first row {lines[0][:60]!r} read as a header (data.header = 'auto')", file=sys.stderr)
        lines = lines[1:]
    elif lines and header == "auto" and _numbers_in(lines[0]) < len(lines[0].split(",")):
        raise SpecError(f"{path}: the first row {lines[0][:60]!r} is partly numbers: is it a header? "
                        "Set data.header = true (skip it) or false (read it)")
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


def _numbers_in(line: str) -> int:
    """How many fields of a CSV row are numbers."""
    count = 0
    for field in line.split(","):
        try:
            float(field)
            count += 1
        except ValueError:
            pass
    return count


def _read_npz(path: Path) -> dict:
    """The arrays of an .npz file, or one line saying why it cannot be read."""
    refuse = lambda why: SpecError(f"data.path: {path} {why}; expected an .npz file of numeric arrays "
                                   f"{', '.join(ARRAY_NAMES)}")
    if not zipfile.is_zipfile(path):
        raise refuse("is not an .npz file (a zip archive)" + (" but an .npy array" if path.read_bytes()[:6] == b"\x93NUMPY" else ""))
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as err:  # noqa: BLE001 - a truncated or damaged archive fails in many ways
        raise refuse(f"cannot be read ({type(err).__name__}: {err})") from None


def from_files(path: str, test_path: str, base: Path | None = None, *, header: str = "auto",
               dtype: str = "float64") -> GivenData:
    """`.npz` (all four arrays) or a training CSV and a test CSV (`header`: data.header);
    relative paths are taken from `base` (the spec file's folder)."""
    resolve = lambda p: (base / p) if base is not None and not Path(p).is_absolute() else Path(p)
    if not path:
        raise SpecError("data.path: data.name = 'file' needs data.path (an .npz file, or a training CSV with data.test_path)")
    train = resolve(path)
    if not train.is_file():
        raise SpecError(f"data.path: file not found: {train}")
    if train.suffix == ".npz":
        return validate(_read_npz(train), str(train), dtype)
    if train.suffix == ".csv":
        if not test_path:
            raise SpecError("data.test_path: a training CSV needs a test CSV beside it (data.test_path)")
        test = resolve(test_path)
        if not test.is_file():
            raise SpecError(f"data.test_path: file not found: {test}")
        X_train, y_train = _read_csv(train, header)
        X_test, y_test = _read_csv(test, header)
        return validate(dict(X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test), f"{train} + {test}", dtype)
    raise SpecError(f"data.path: got {path!r}; expected an .npz or .csv file")
