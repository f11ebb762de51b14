"""Safe file writing for caches and runs: writable checks up front, build-once folders.

`build_once(folder, build, is_complete)` is how every generated cache is written. Several
processes may start at once (DDP ranks, pytest-xdist, two shells on a fresh `$ZOO_HOME`), and a
generation may be killed at any moment; what must hold:

- one process builds, the others wait on a file lock (`<folder>.lock`, released by the kernel
  when its holder dies, even by SIGKILL) and then read the finished folder;
- a build writes into its own `<folder>.partial-<pid>-<nonce>` and renames it into place only when
  complete, so a reader never sees a half-written folder;
- whatever a killed build left (`.partial-*` folders, an incomplete `folder` of an older format)
  is removed by the next build, under the lock, before it starts.

`atomic_file(path)` is the same for one output file (exported textures, meshes, animations, maps
added to a cache): the writer fills a hidden temporary file beside `path`, renamed onto `path` only
when complete, so a kill or an error never leaves a half-written `path` and an older complete file
stays until the new one is whole.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from filelock import FileLock

log = logging.getLogger(__name__)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix: writers that choose the format from the
    name still work); it replaces `path` when the block ends without an error (module doc)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a fresh unique name, created by the writer itself (so with the usual permissions)
    temporary = path.parent / f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def require_writable(folder: str | os.PathLike, what: str, how: str) -> Path:
    """Create `folder` if needed and prove it is writable by writing a probe file into it.

    A probe, not `os.access`: root bypasses permission bits, and read-only mounts or a file in the
    way only show when something is written. Raises PermissionError naming `what`, the folder,
    the reason and `how` to fix it, before any work is done."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".zoo-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise PermissionError(f"{what} {folder} is not writable ({reason}). {how}") from err
    return folder


def partial_folders(folder: Path) -> list[Path]:
    """The `<folder>.partial*` siblings that builds of `folder` leave while they run (or when killed)."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        return []
    return sorted(p for p in folder.parent.glob(folder.name + ".partial*") if p.is_dir())


def build_once(folder: str | os.PathLike, build: Callable[[Path], None], is_complete: Callable[[Path], bool],
               what: str = "cache", how: str = "Set $ZOO_HOME (or the data_dir option) to a writable folder.") -> Path:
    """Make sure `folder` holds a complete build; build it at most once across processes.

    Args:
        folder: the final folder.
        build: writes the whole content into the (empty, existing) folder it is given.
        is_complete: True when a folder holds a finished build (e.g. its last-written file exists).
        what / how: names the cache and the fix in the error raised when its parent is not writable.
    Returns:
        `folder`, complete.
    """
    folder = Path(folder).expanduser()
    if is_complete(folder):
        return folder
    require_writable(folder.parent, f"the {what} folder", how)
    with FileLock(str(folder.parent / (folder.name + ".lock"))):
        if is_complete(folder):  # another process built it while this one waited
            log.info("%s already built by another process: %s", what, folder)
            return folder
        for stale in partial_folders(folder):  # left by killed builds: nobody else holds the lock
            log.warning("removing %s left by an interrupted build", stale)
            shutil.rmtree(stale, ignore_errors=True)
        if folder.exists():
            log.warning("removing incomplete %s %s before rebuilding it", what, folder)
            shutil.rmtree(folder) if folder.is_dir() else folder.unlink()
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        partial.mkdir()
        try:
            build(partial)
            if not is_complete(partial):
                raise RuntimeError(f"building {what} {folder} finished without writing a complete folder")
            os.replace(partial, folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return folder


__all__ = ["atomic_file", "build_once", "partial_folders", "require_writable"]
