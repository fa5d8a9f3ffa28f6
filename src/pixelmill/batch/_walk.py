"""Walking the inputs and naming the outputs: which files a batch reads, where each result goes."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InvalidParameterError, UnsafeOutputError
from ..io import FORMAT_SUFFIX, is_image_path
from ..ops import Operation

__all__ = ["discover", "check_outdir", "prepare_outdir", "output_path", "escapes_outdir", "RealPaths"]


def discover(inputs) -> tuple[list[tuple[Path, Path]], int]:
    """``([(file, path relative to its input root)], number of non-image files ignored)``.

    Folders are walked recursively, following symlinks but never entering the same real
    folder twice (so symlink loops end). Our own temporary files are ignored.
    """
    found: list[tuple[Path, Path]] = []
    ignored = 0
    for raw in inputs:
        root = Path(raw)
        if not root.exists():
            raise InvalidParameterError(f"input {str(raw)!r} does not exist")
        if root.is_file():
            if is_image_path(root):
                found.append((root, Path(root.name)))
            else:
                ignored += 1
            continue
        seen: set[tuple[int, int]] = set()
        for folder, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(folder) / name
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                if is_image_path(path) and path.is_file():
                    found.append((path, path.relative_to(root)))
                else:
                    ignored += 1
    return found, ignored




def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_outdir(outdir: Path, inputs) -> None:
    out_real = Path(os.path.realpath(outdir))
    for raw in inputs:
        root = Path(os.path.realpath(raw))
        if root.is_dir() and _inside(out_real, root):
            raise UnsafeOutputError(
                f"output folder {str(outdir)!r} is the input folder {str(raw)!r} or inside it; "
                "choose an output folder outside the inputs"
            )


def prepare_outdir(outdir: Path) -> None:
    """Create ``outdir`` if needed and make sure it is a folder this process can write in.

    Raises
    ------
    UnsafeOutputError
        When ``outdir`` (or one of its parents) is a file, or it cannot be created or written
        (a read-only filesystem, a folder of another user): a usage error, before any work.
    """
    text = str(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise UnsafeOutputError(f"output folder {text!r} is a file, not a folder; choose a folder")
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeOutputError(
            f"output folder {text!r} cannot be created: one of its parents is a file"
        ) from None
    except OSError as exc:
        raise UnsafeOutputError(
            f"output folder {text!r} cannot be created ({exc.strerror or exc})"
        ) from None
    if not outdir.is_dir():
        raise UnsafeOutputError(f"output folder {text!r} is not a folder; choose a folder")
    # os.access says yes to root on a read-only mount's files only by mode: try for real.
    from .._files import temporary_name

    probe = outdir / temporary_name()
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise UnsafeOutputError(
            f"output folder {text!r} is not writable ({exc.strerror or exc}); choose a folder you can write in"
        ) from None
    os.close(fd)
    os.unlink(probe)


def escapes_outdir(out: Path, out_real: str, realpath: "RealPaths") -> str | None:
    """Why ``out`` would be written outside ``outdir`` (whose real path is ``out_real``), or
    None when its real parent folder is inside it: a symlinked folder in OUTDIR
    (``OUT/sub -> /elsewhere``) must not carry an output out of it."""
    parent = realpath.folder(out.parent)
    if _inside(Path(parent), Path(out_real)):
        return None
    return (f"refused: the output's folder {str(out.parent)!r} is really {parent!r}, outside the output "
            f"folder (a symlink in it); pixelmill never writes outside the output folder")


def output_path(outdir: Path, rel: Path, op: Operation, several: bool, fmt: str | None) -> tuple[Path, str]:
    """``(output path, the same relative to outdir, in / form)``."""
    rel = Path(*[p for p in rel.parts if p not in ("", ".", "..")])
    if fmt:
        rel = rel.with_suffix(FORMAT_SUFFIX[fmt])
    if several:
        rel = op.label / rel
    out = outdir / rel
    # A name can never climb out of OUTDIR: parts are filtered above, and this is the proof.
    if not _inside(Path(os.path.normpath(out)), Path(os.path.normpath(outdir))):
        raise UnsafeOutputError(f"output {str(out)!r} would fall outside {str(outdir)!r}")
    return out, rel.as_posix()


class RealPaths:
    """``os.path.realpath`` of many files, each folder resolved once: a file's real path is
    its folder's and its name, unless the file itself is a symlink."""

    def __init__(self):
        self._folders: dict[str, str] = {}

    def __call__(self, path) -> str:
        path = os.fspath(path)
        if os.path.islink(path):
            return os.path.realpath(path)
        folder, name = os.path.split(path)
        return os.path.join(self.folder(folder), name)

    def folder(self, folder) -> str:
        """``os.path.realpath(folder)``, resolved once per folder."""
        folder = os.fspath(folder)
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder or os.curdir)
        return self._folders[folder]
