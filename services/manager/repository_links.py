"""Local backups on disk: the hard-linked copy of a source cluster's `fs` repository that a clone
reads from inside its own `path.repo`, and removing such copies when a cluster is purged.

Where a copy lies is decided in backups.py (`incoming_location`); this module only does the file
work. Repository files are immutable once written (the engine writes a new file and renames it
over, never into an old one), so a hard link is a faithful copy that costs no space.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Linked:
    """What one `link_repository` made: files hard-linked, files copied (no link possible there)."""

    linked: int = 0
    copied: int = 0


def link_repository(source: Path, target: Path) -> Linked:
    """Replace `target` with a copy of `source` made of hard links; a file that cannot be linked
    (another filesystem) is copied. A missing `source` gives an empty `target`.

    The root files (`index-N`, `index.latest`) go first: the blobs they name were written before
    them, so whatever the source writes meanwhile, the copy's root names only blobs it holds.
    """
    shutil.rmtree(target, ignore_errors=True)  # afresh: the source's newer snapshots are seen
    target.mkdir(parents=True)
    linked = copied = 0
    for root, dirs, files in os.walk(source):
        dirs.sort()
        into = target / Path(root).relative_to(source)
        into.mkdir(exist_ok=True)
        for name in sorted(files):
            made = _link_one(Path(root) / name, into / name)
            linked, copied = linked + (made == "linked"), copied + (made == "copied")
    return Linked(linked, copied)


def _link_one(source: Path, target: Path) -> str | None:
    """Hard-link one regular file (copy it if that fails); None if it is gone or not a file."""
    try:
        if not stat.S_ISREG(source.lstat().st_mode):
            return None  # the engine writes only regular files: anything else is not followed
        os.link(source, target, follow_symlinks=False)
        return "linked"
    except FileNotFoundError:
        return None  # deleted by the source's own snapshot deletion meanwhile: no root names it
    except OSError:
        try:
            shutil.copy2(source, target, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return "copied"


def remove_links(restores_dir: Path, cluster_id: str) -> None:
    """A purged cluster's incoming copies, and every other cluster's copy of its repository: its
    data is gone for good only once no hard link keeps it."""
    shutil.rmtree(restores_dir / cluster_id, ignore_errors=True)
    for incoming in restores_dir.glob(f"*/{cluster_id}"):
        shutil.rmtree(incoming, ignore_errors=True)
