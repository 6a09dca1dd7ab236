"""Whether a folder takes our files: one check for every folder jaxgd writes into (a run's
--out, a figure's folder, the compile cache), below the engine and storage that use it.
No JAX here."""

from __future__ import annotations

import tempfile
from pathlib import Path


def cannot_write(folder: Path, *, make: bool = False) -> str | None:
    """Why files cannot be written into `folder` (made first, with its parents, where
    `make`), or None: a file is made there, as a writer will (an access check says yes
    to root in /proc)."""
    try:
        if make:
            folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except FileExistsError:  # made where a file is
        return "it is a file"
    except OSError as err:
        return err.strerror or str(err)
    return None
