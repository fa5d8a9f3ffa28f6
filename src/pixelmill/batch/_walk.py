"""Walking the inputs and naming the outputs: which files a batch reads, where each result goes."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidParameterError, UnsafeOutputError
from ..io import EXTENSION_FORMATS, FORMAT_SUFFIX, IMAGE_EXTENSIONS, is_image_path
from ..ops import Operation

__all__ = ["discover", "select", "Selection", "read_file_list", "check_outdir", "prepare_outdir", "output_path", "escapes_outdir", "RealPaths"]


def discover(inputs) -> tuple[list[tuple[Path, Path]], int]:
    """``([(file, path relative to its input root)], number of non-image files ignored)``.

    Folders are walked recursively, following symlinks but never entering the same real
    folder twice (so symlink loops end); a file reached twice (the same folder given twice, a
    symlink to a file already found) is listed once. Our own temporary files are ignored.
    See :func:`select` for patterns, lists of files and the files that cannot be processed
    (counted here with the ignored ones).
    """
    selection = select(inputs)
    return selection.files, selection.ignored + len(selection.refused)


@dataclass
class Selection:
    """What a batch reads: the files, each with its path relative to its input root (which
    names its output), and what was left out."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    #: Non-image files met while walking a folder (not named by the user).
    ignored: int = 0
    #: Files the user named (an input, a line of ``--files-from``) that cannot be processed,
    #: as ``(path, relative path, reason)``: a batch records each as a failed item.
    refused: list[tuple[Path, Path, str]] = field(default_factory=list)
    #: Files reached more than once (by real path), processed once.
    duplicates: int = 0
    #: Files and folders left out by ``exclude`` or not matched by ``include``.
    excluded: int = 0


def _matches(rel: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in patterns)


def read_file_list(source) -> tuple[list[str], Path]:
    """The paths listed in ``source`` (a file, or ``"-"`` for stdin), one a line, and the
    folder relative paths are relative to: the list file's folder, or the current folder for
    stdin. Blank lines and lines starting with ``#`` are skipped; surrounding spaces are
    kept out of the path only at the line's end (a name may start with a space)."""
    import sys

    if str(source) == "-":
        text, base = sys.stdin.read(), Path.cwd()
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except IsADirectoryError:
            raise InvalidParameterError(f"--files-from {str(source)!r} is a folder; give a file with one path a line") from None
        except OSError as exc:
            raise InvalidParameterError(
                f"--files-from {str(source)!r} cannot be read ({exc.strerror or exc})"
            ) from None
        base = path.parent
    lines = [line.rstrip("\r\n").rstrip() for line in text.splitlines()]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")], base


def select(inputs=(), *, include=(), exclude=(), files_from=None) -> Selection:
    """The files a batch over ``inputs`` reads.

    Parameters
    ----------
    inputs : list of path
        Files and folders; folders are walked recursively (see :func:`discover`).
    include, exclude : sequence of str
        ``fnmatch`` patterns matched against a file's path relative to its input folder, in
        ``/`` form (``*`` also matches ``/``: ``*.jpg`` matches ``2023/a.jpg``). A file found
        in a folder is taken when it matches an ``include`` pattern (any file when there is
        none) and no ``exclude`` pattern; a folder matching an ``exclude`` pattern is not
        entered. Files named explicitly (an input, a line of ``files_from``) are always taken.
    files_from : path or "-", optional
        A list of further inputs, one path a line (:func:`read_file_list`). A listed path
        that does not exist is refused (a failed item), not a usage error: a long list made
        by another tool must not stop the batch for one stale line. Its output is named by
        its path relative to the list's folder (by its name when it is outside).

    Raises
    ------
    InvalidParameterError
        An input on the command line that does not exist, or a list that cannot be read.
    """
    sel = Selection()
    seen_files: set[str] = set()

    def take(path: Path, rel: Path) -> None:
        real = os.path.realpath(path)
        if real in seen_files:
            sel.duplicates += 1
        else:
            seen_files.add(real)
            sel.files.append((path, rel))

    def named(path: Path, rel: Path, listed: bool) -> None:
        if not os.path.lexists(path):
            if not listed:
                raise InvalidParameterError(f"input {str(path)!r} does not exist")
            sel.refused.append((path, rel, f"{str(path)!r} (listed in --files-from) does not exist"))
        elif path.is_dir():
            walk(path)
        elif not path.is_file():
            sel.refused.append((path, rel, f"{str(path)!r} is not a regular file (a device, a pipe or a "
                                           "dangling link); give an image file"))
        elif not is_image_path(path):
            if os.path.realpath(path) not in seen_files:
                seen_files.add(os.path.realpath(path))
                sel.refused.append((path, rel, f"{str(path)!r} is not an image file: extension "
                                               f"{path.suffix or '(none)'!r} is none of "
                                               f"{', '.join(sorted(IMAGE_EXTENSIONS))}"))
        else:
            take(path, rel)

    def walk(root: Path) -> None:
        seen: set[tuple[int, int]] = set()
        for folder, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            if exclude:
                kept = [d for d in dirnames if not _matches((Path(folder, d).relative_to(root)).as_posix(), exclude)]
                sel.excluded += len(dirnames) - len(kept)
                dirnames[:] = kept
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(folder) / name
                if name.startswith(".") and name.endswith(".tmp"):
                    continue
                if not (is_image_path(path) and path.is_file()):
                    sel.ignored += 1
                    continue
                rel = path.relative_to(root)
                if (include and not _matches(rel.as_posix(), include)) or _matches(rel.as_posix(), exclude):
                    sel.excluded += 1
                    continue
                take(path, rel)

    for raw in inputs:
        root = Path(raw)
        named(root, Path(root.name), listed=False)
    if files_from is not None:
        listed, base = read_file_list(files_from)
        base_abs = os.path.abspath(base)
        for line in listed:
            path = Path(line) if Path(line).is_absolute() else base / line
            rel = Path(os.path.relpath(os.path.abspath(path), base_abs))
            if not rel.parts or rel.parts[0] in (os.curdir, os.pardir):
                rel = Path(path.name)
            named(path, rel, listed=True)
    return sel


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
    if fmt and EXTENSION_FORMATS.get(rel.suffix.lower()) != fmt:
        # A new format gets its own extension; the same format keeps the input's spelling
        # (``.tiff`` stays ``.tiff``, ``.JPG`` stays ``.JPG``).
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
