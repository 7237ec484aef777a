"""Atomic file output: write to a temp file in the target directory, rename on success.

Also the owner of eifbuild's temp names: ``.OUT.eifbuild-tmp-PID`` next to an output and
``eifbuild-KIND-PID-*`` directories in ``$TMPDIR``. A process killed with SIGKILL cannot
remove them, so the next run that uses the same name pattern removes those whose PID is no
longer running (and that belong to the same user).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from eifbuild.errors import EifbuildError
from eifbuild.textescape import safe_name

TMP_MARK = ".eifbuild-tmp-"
_DIR_RE = re.compile(r"eifbuild-(?:image|boot|diff)-(\d+)-[A-Za-z0-9_]+\Z")


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (ours or another user's)."""
    if pid <= 0:
        return True  # not a PID we wrote: never treat as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(path: str, pid_text: str) -> bool:
    """``path`` is ours (same uid) and its PID is dead."""
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and not pid_alive(int(pid_text))


def clean_stale_outputs(dest: Path) -> None:
    """Remove ``.DEST.eifbuild-tmp-PID`` files left next to ``dest`` by killed runs."""
    parent = dest.parent if str(dest.parent) else Path(".")
    prefix = f".{dest.name}{TMP_MARK}"
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix) and _stale(str(parent / name), name[len(prefix) :]):
            with contextlib.suppress(OSError):
                os.unlink(parent / name)  # a file or symlink: never followed


def make_temp_dir(kind: str) -> str:
    """A new private ``$TMPDIR/eifbuild-KIND-PID-XXXX`` directory, after removing stale ones
    (same pattern, dead PID, same user) that a killed run left behind."""
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            m = _DIR_RE.match(entry.name)
            if m is not None and entry.is_dir(follow_symlinks=False) and _stale(entry.path, m[1]):
                shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"eifbuild-{kind}-{os.getpid()}-", dir=base)


def check_output_target(dest: Path) -> None:
    """Refuse to replace anything but a regular file (or nothing): a device node, a FIFO,
    a socket, or a symlink (even to a regular file: the rename would replace the link,
    not its target, which is never what was meant)."""
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    except OSError as exc:
        what = safe_name(os.fspath(dest))
        raise EifbuildError(f"{what}: cannot use as output ({exc.strerror})") from None
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return  # a directory: the rename itself fails (IsADirectoryError), nothing is replaced
    kind = (
        "a symlink"
        if stat.S_ISLNK(st.st_mode)
        else "a device node"
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
        else "not a regular file"
    )
    raise EifbuildError(
        f"{safe_name(os.fspath(dest))}: refusing to replace {kind} with an output file "
        "(give the path of a new or regular file)"
    )


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``path`` only if the block completes.

    The temp file lives in the destination directory (so the rename is atomic), has a
    name derived from the destination (no randomness leaks into outputs) and is removed
    on any exception. ``fsync`` is called before the rename. An existing ``path`` that is
    not a regular file (device node, symlink, directory, FIFO) is refused up front.
    """
    dest = Path(path)
    check_output_target(dest)
    clean_stale_outputs(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    tmp = parent / f".{dest.name}{TMP_MARK}{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a stale temp file of ours (same pid): never follow or reuse it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        check_output_target(dest)  # it may have appeared while we wrote
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    with atomic_output(path, mode) as fh:
        fh.write(data)
