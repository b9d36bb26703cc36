"""Files and directories that hold personal data or secrets in clear: owner-only (0700 directories, 0600 files).

Used by the producer's spool, the chDB warehouse directory and the sink's scratch directory. A directory found
looser than 0700 (made by an older version, or under a loose umask) is tightened rather than trusted.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

DIR_MODE, FILE_MODE = 0o700, 0o600


def private_dir(directory: Path) -> Path:
    """Create `directory` 0700 (parents as the umask says), or tighten it to 0700 if it exists looser."""
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if stat.S_IMODE(directory.stat().st_mode) != DIR_MODE:
        os.chmod(directory, DIR_MODE)
    return directory


def private_files(directory: Path) -> None:
    """Tighten every file directly in `directory` to 0600 (those created with the umask's mode)."""
    for path in directory.iterdir():
        if path.is_file() and stat.S_IMODE(path.stat().st_mode) != FILE_MODE:
            os.chmod(path, FILE_MODE)


def emptied(directory: Path) -> list[str]:
    """Delete everything in `directory` (the leftovers of a killed process); returns the names deleted."""
    names = []
    for path in directory.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        names.append(path.name)
    return sorted(names)
