"""Atomic file output: readers never see half a file, and a killed writer's temporary file is removed by the next.

A temporary file lives beside its target as ``.NAME.<pid>@<host>[~<random>].tmp``: the writer's process id and
host name say whose it is. :func:`remove_stale_temps` removes those of ``NAME`` whose writer was on this host and is
no longer alive (and the host-less ``.NAME.<pid>.tmp`` of earlier versions), never a live writer's, nor one written
from another host (a shared file system).
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

_TEMP_TAIL = re.compile(r"(?P<pid>\d+)(?:@(?P<host>[^~/]+))?(?:~[^/]*)?\.tmp")


def _host() -> str:
    return socket.gethostname().replace("~", "-") or "localhost"


def temp_name(path: Path) -> Path:
    """The temporary file a writer of ``path`` in this process uses: ``.NAME.<pid>@<host>.tmp`` beside it."""
    return path.parent / f".{path.name}.{os.getpid()}@{_host()}.tmp"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers of this host that are no longer alive; return them."""
    removed: list[Path] = []
    prefix = f".{path.name}."
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _TEMP_TAIL.fullmatch(entry.name[len(prefix) :])
        if match is None or (match["host"] is not None and match["host"] != _host()):
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            entry.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue
        removed.append(entry)
    return removed


def unwritable_dir(path: Path) -> str | None:
    """Why files cannot be written in the folder ``path`` (made if missing), or ``None`` if they can.

    Checked before any work: ``path`` or a folder above it is a file, or the first existing folder is read-only.
    """
    path = Path(os.path.expanduser(path))
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder" if probe == path else f"{probe} (above {path}) is a file"
    read_only_mount = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)  # root ignores permissions, not this
    if read_only_mount or not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable" + ("" if probe == path else f" (to make {path})")
    return None


def _umask() -> int:
    """The process's umask, read from /proc where it is shown (setting it to read it back races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is left as it was; temporary files of ``path`` left
    by killed writers are removed first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host()}~", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes the file private (0600); the finished file gets the mode a plain open() would give it
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
