"""Run folders: which folder a run may write, the lock that keeps it to one writer, and
checkpoints that hold only data and prove they are whole.

Nothing is lost: a run never writes into a folder that holds something else (`--out` on
a non-empty folder or another run needs `--force`, which replaces only the run's own
files), `--resume` checks the folder is a run of this very module and that its
checkpoint fits before anything is written, and two runs never share a folder. Nothing
runs that the user did not write: a checkpoint is read with `weights_only=True`
(tensors and plain data, no code) and its checksum is checked before its contents are.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

import torch

# What a run writes in its folder (and `metadsl plot` beside it): `--force` replaces
# these, and nothing else.
RUN_FILES = ("args.json", "versions.json", "train.py", "spec.mrl", "metrics.csv",
             "checkpoint.pt", "eval.json", "tensorboard", "learning_curves.png",
             "evaluation.png")
# and each one's `NAME.tmp` while it is replaced whole (write_atomic)
LOCK = "lock"
CHECKPOINT = "checkpoint.pt"
_FORMAT = 1


class UsageError(SystemExit):
    """An option, setting or run folder the run refuses, said on stderr. Exit status 2: the
    command asked for something not allowed; 4: the operating system refused, or a file is
    unreadable."""

    def __init__(self, message: str, status: int = 2):
        sys.stderr.write(message.rstrip("\n") + "\n")
        super().__init__(status)


def refuse(code: str, message: str, hint: str | None = None, status: int = 2) -> NoReturn:
    """Stop before anything is changed, with the error's code and a hint."""
    raise UsageError(f"error[{code}]: {message}" + (f"\n  = help: {hint}" if hint else ""),
                     status)


def versions(folder: Path) -> dict | None:
    """A run folder's versions.json (spec, its hash, library versions); None if absent."""
    path = folder / "versions.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        refuse("E0602", f"{path} cannot be read: {e}", status=4)
    if not isinstance(data, dict):
        refuse("E0602", f"{path} is not a run's versions.json", status=4)
    return data


def choose(spec: str, digest: str, out: Path | None, resume: Path | None,
           force: bool) -> Path:
    """The folder this run writes, checked before anything is written to it."""
    if resume is not None:
        return _resumable(spec, digest, resume)
    if out is not None and str(out) in ("", "."):
        refuse("E0601", "--out needs a folder of its own, not the working folder",
               hint="--out runs/NAME")
    folder = out if out is not None else Path("runs") / f"{spec}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out is None:  # two runs started in the same second get folders of their own
        n, base = 1, folder
        while folder.exists():
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
    if folder.exists() and not folder.is_dir():
        refuse("E0601", f"--out {folder} is a file, not a folder")
    if folder.is_dir() and _entries(folder) and not force:
        held = versions(folder)
        if held is not None:
            refuse("E0601", f"{folder} already holds a run of spec '{held.get('spec')}'",
                   hint=f"--resume {folder} continues it; --force starts over there, "
                        "replacing its metrics, checkpoint and evaluation")
        refuse("E0601", f"{folder} is not empty, and a run writes several files",
               hint="choose a new or empty folder; --force writes there anyway, replacing "
                    "only the run's own files (" + ", ".join(RUN_FILES[:5]) + ", ...)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        refuse("E0603", f"cannot make the run folder {folder}: {e.strerror or e}", status=4)
    return folder


def _entries(folder: Path) -> list[str]:
    """What the folder holds besides a lock file of a run's (a linked `lock` is not one)."""
    try:
        return [p.name for p in folder.iterdir()
                if p.name != LOCK or p.is_symlink() or not p.is_file()]
    except OSError as e:
        refuse("E0603", f"cannot read {folder}: {e.strerror or e}", status=4)


def _resumable(spec: str, digest: str, folder: Path) -> Path:
    if not folder.is_dir():
        refuse("E0601", f"--resume {folder}: no such run folder")
    held = versions(folder)
    if held is None:
        refuse("E0601", f"--resume {folder}: not a run folder (no versions.json)")
    if held.get("spec") != spec:
        refuse("E0601", f"--resume {folder}: it holds a run of spec '{held.get('spec')}', "
                        f"not '{spec}'")
    if held.get("spec_sha256") != digest:
        refuse("E0601", f"--resume {folder}: it was trained from another version of spec "
                        f"'{spec}' (sha256 {held.get('spec_sha256')}, this one {digest})",
               hint=f"the run's own module resumes it: python {folder / 'train.py'} "
                    f"--resume {folder}")
    return folder


class Lock:
    """The folder's one writer: an exclusive advisory lock on `lock`, released when the
    process ends however it ends (kill -9 included)."""

    def __init__(self, folder: Path):
        path = folder / LOCK
        if path.is_symlink():
            refuse("E0601", f"{path} is a symbolic link: a run never follows links in its "
                            "folder", hint="remove it, or give the run another folder")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            self.file = os.fdopen(fd, "r+", encoding="utf-8")
        except OSError as e:
            refuse("E0603", f"cannot write in the run folder {folder}: {e.strerror or e}",
                   status=4)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "?"
            refuse("E0601", f"{folder} is in use by another run (pid {holder})",
                   hint="wait for it, or give this run another folder")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        self.file.close()


def clear(folder: Path) -> None:
    """Remove a previous run's own files (`--force`, or a resume with no checkpoint)."""
    for name in RUN_FILES + tuple(f"{name}.tmp" for name in RUN_FILES):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def create(path: Path, binary: bool = False):
    """A new file at `path`, open for writing: whatever was there is removed first (a
    link is removed, never followed), so a run writes only files of its own."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    return os.fdopen(os.open(path, flags, 0o644), "wb" if binary else "w",
                     **({} if binary else {"encoding": "utf-8", "newline": ""}))


def append(path: Path):
    """`path` open for appending text, refused (OSError) if it is a link."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW), "a",
                     encoding="utf-8", newline="")


@contextlib.contextmanager
def replaced(path: Path, binary: bool = False):
    """A file to write that replaces `path` whole when the block ends: written beside it,
    synced, then renamed over it, so a reader or a kill at any moment sees the old file or
    the new one, never a part (and a block that raises leaves the old one)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with create(tmp, binary=binary) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written is left beside the old file
        raise
    os.replace(tmp, path)


def write_atomic(path: Path, data: str | bytes) -> None:
    """Replace `path` whole with `data` (see `replaced`)."""
    with replaced(path, binary=isinstance(data, bytes)) as f:
        f.write(data)


def save(folder: Path, spec: str, digest: str, payload: dict) -> None:
    """Write the checkpoint atomically: the payload's bytes, their SHA-256 and the spec
    they belong to, in one file (a rename replaces the previous one whole)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    record = {"format": _FORMAT, "spec": spec, "spec_sha256": digest,
              "sha256": hashlib.sha256(data).hexdigest(),
              "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
    with replaced(folder / CHECKPOINT, binary=True) as f:
        torch.save(record, f)


def load(folder: Path, spec: str, digest: str) -> dict:
    """The checkpoint's payload, once the file is proven whole and this spec's."""
    path = folder / CHECKPOINT
    try:
        record = torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        refuse("E0602", f"{path} cannot be read ({type(e).__name__}): it is truncated, "
                        "damaged or not a metadsl checkpoint", status=4)
    if not isinstance(record, dict) or record.get("format") != _FORMAT or \
            not isinstance(record.get("payload"), torch.Tensor):
        refuse("E0602", f"{path} is not a metadsl checkpoint", status=4)
    if record.get("spec") != spec or record.get("spec_sha256") != digest:
        refuse("E0602", f"{path} belongs to spec '{record.get('spec')}' "
                        f"(sha256 {record.get('spec_sha256')}), not this one", status=4)
    data = record["payload"].numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        refuse("E0602", f"{path} was changed or damaged after it was written: its "
                        "checksum does not match", status=4)
    return torch.load(io.BytesIO(data), weights_only=True)
