"""Files of an --out folder written safely: every file through a temporary name of its
writer (host and pid in the name, so that tidying removes only the leftovers of dead
processes) renamed into place, and a lock so that one sweep at a time writes a folder.
No JAX here: reading and writing tables never imports it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from pathlib import Path

from jaxgd.folders import cannot_write

HOST = socket.gethostname()
# The files of an --out folder beside its parts (storage.parts): the tables, the resolved
# spec, the figures' stats, and the lock.
HISTORY_FILE, SUMMARY_FILE, SPEC_FILE, STATS_FILE = "history.parquet", "summary.parquet", "spec.toml", "stats.json"
LOCK_FILE = ".jaxgd.lock"
_TMP_SEP = "~"  # .<name>~<host>~<pid>~<random>.tmp


def temporary_name(path: Path) -> Path:
    """A name beside `path` that only this process writes, and that says who wrote it."""
    return path.with_name(f".{path.name}{_TMP_SEP}{HOST}{_TMP_SEP}{os.getpid()}{_TMP_SEP}{secrets.token_hex(4)}.tmp")


def atomic_write(path: Path, write) -> None:
    """`write(tmp)` a temporary file, flush it to disk and rename it to `path`, so a crash
    leaves either the whole file or none, and no reader ever sees half of one."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def is_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def left_by_dead_process(tmp: Path) -> bool:
    """A temporary file whose writer, on this host, is gone (a file of another host, or of
    a live process, may still be written and is left alone)."""
    parts = tmp.name[: -len(".tmp")].split(_TMP_SEP)
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    return parts[1] == HOST and not is_alive(int(parts[2]))


class FolderBusy(OSError):
    """Another live process writes the folder."""


class Lock:
    """`DIR/.jaxgd.lock`, held while one sweep writes DIR: it names the host and pid of its
    holder. A lock whose holder is gone (same host, dead pid) is stale and taken over."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK_FILE
        self.held = False

    def holder(self) -> dict | None:
        try:
            found = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def acquire(self) -> "Lock":
        mine = json.dumps({"host": HOST, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")})
        for _ in range(3):  # a stale lock removed, then created anew
            try:
                self._create(mine)
            except FileExistsError:
                holder = self.holder()
                if holder is None or self._stale(holder):
                    self._remove_stale(holder)
                    continue
                raise FolderBusy(
                    f"{self.path.parent} is being written by another jaxgd process (host {holder.get('host')}, "
                    f"pid {holder.get('pid')}, since {holder.get('since')}); wait for it, or use another --out "
                    f"(if that process is gone, delete {self.path})") from None
            self.held = True
            return self
        raise FolderBusy(f"could not take the lock {self.path}; another process keeps taking it")

    def _create(self, content: str) -> None:
        """The lock file with `content`, made whole in one step (a hard link of a written
        file), or FileExistsError: another process never reads it empty, as stale."""
        written = temporary_name(self.path)
        written.write_text(content)
        try:
            os.link(written, self.path)
        finally:
            written.unlink()

    def _remove_stale(self, holder: dict | None) -> None:
        """Remove the lock file judged stale (its holder `holder`): moved aside in one step,
        then put back if it is not that one (another process took the stale lock over in the
        meantime: its fresh lock stays)."""
        aside = temporary_name(self.path)
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # another process removed it first
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = None
        if moved != holder:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink()

    @staticmethod
    def _stale(holder: dict) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == HOST and isinstance(pid, int) and (pid == os.getpid() or not is_alive(pid))

    def release(self) -> None:
        if self.held:
            holder = self.holder()
            if holder and holder.get("host") == HOST and holder.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def figure_formats() -> dict:
    """{suffix: description} of the formats matplotlib writes, its own list: imported
    (0.3 s) only where a figure will be drawn."""
    from matplotlib.backend_bases import FigureCanvasBase

    return FigureCanvasBase.get_supported_filetypes()


def figure_path(out: Path, name: str, *, option: str, given=None) -> Path:
    """Where the figure `name` of the sweep in `out` is written, checked before anything
    is drawn (or run): `given` (a path anywhere, `jaxgd plot --out`), else `out / name`,
    which must stay inside `out`. It must not be a folder, end in a format matplotlib
    writes (so that no figure overwrites history.parquet or spec.toml, or fails after the
    sweep) and be in a folder that exists (`out` itself may not yet: a run makes it) and
    can be written; else
    a ValueError names `option` (not the temporary file the write would fail on)."""
    path, shown = (Path(out) / name, name) if given is None else (Path(given), str(given))
    got = f"{option}: got {shown!r}"
    if given is None and (Path(name).is_absolute() or ".." in Path(name).parts):
        raise ValueError(f"{got}; figures are written inside the --out folder; give a name relative to it")
    if path.is_dir():
        raise ValueError(f"{got}; it is a folder, give a file in it, e.g. {path / name}")
    formats = figure_formats()
    if path.suffix.lstrip(".") not in formats:
        raise ValueError(f"{got}; expected a file name ending in {', '.join(f'.{f}' for f in formats)}")
    if not path.parent.is_dir() and (given is not None or path.parent != Path(out)):
        raise ValueError(f"{got}; the folder {path.parent} does not exist")
    if path.parent.is_dir() and (reason := cannot_write(path.parent)):
        raise ValueError(f"{got}; the folder {path.parent} cannot be written ({reason}); "
                         "give a file in a folder you can write to")
    return path


def figure_files(out: Path, plot: dict) -> list[tuple[str, dict, Path]]:
    """(kind, entry, path) of each figure of a spec's resolved [plot] table, every path
    checked (figure_path) before any figure is drawn or any run computed."""
    return [(kind, entry, figure_path(out, entry["file"], option=f"plot.{kind}.file"))
            for kind, entries in plot.items() for entry in entries]


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure written atomically, in the format its file name says."""
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".")))
