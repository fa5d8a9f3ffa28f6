"""The record of a batch: the journal (one line per finished output, appended as it finishes, so
a killed run resumes) and ``manifest.json`` (every item of the run), written and read here."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from .._version import __version__
from ..errors import InvalidParameterError
from .._files import atomic_write

__all__ = ["MANIFEST_NAME", "JOURNAL_NAME", "MANIFEST_VERSION", "check_manifest", "write_manifest", "read_manifest", "load_journal", "is_up_to_date",
           "Journal", "earlier_outputs", "open_journal",
           "output_key", "input_signature", "record"]

MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = ".pixelmill-journal.jsonl"
#: The manifest schema :func:`write_manifest` writes and :func:`read_manifest` accepts.
MANIFEST_VERSION = 1


def input_signature(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def output_key(input_sig: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{input_sig}|{fingerprint}".encode()).hexdigest()[:32]


class Journal(dict):
    """The latest record per output path (relative), and ``ignored``: how many lines were not
    records (cut short by a kill, not UTF-8, not JSON, or fields of the wrong type)."""

    ignored: int = 0


#: The fields a journal record must have, and their types: anything else is not trusted.
_RECORD_FIELDS = {"input": str, "output": str, "key": str, "status": str, "op": str}


def _valid_record(rec) -> bool:
    if not isinstance(rec, dict):
        return False
    if not all(isinstance(rec.get(k), t) for k, t in _RECORD_FIELDS.items()):
        return False
    size = rec.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        return False
    return isinstance(rec.get("timings", {}), dict)


def load_journal(outdir: Path) -> Journal:
    """Latest journal record per output path (relative); a line that is not a valid record is
    skipped and counted (``Journal.ignored``), never an error: a rerun then redoes that output."""
    records = Journal()
    journal = outdir / JOURNAL_NAME
    try:
        fh = open(journal, "rb")
    except FileNotFoundError:
        return records
    except OSError:
        return records  # unreadable: everything is redone
    with fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                records.ignored += 1  # cut short by a kill, or damaged
                continue
            if not _valid_record(rec):
                records.ignored += 1
                continue
            records[rec["output"]] = rec
    return records


@contextmanager
def open_journal(outdir: Path):
    """Yield ``append(records)``: each call appends one line per record, written straight to
    the file (no buffer to lose or to fail again at close). Opened without following a
    symlink; a last line cut short by a kill is ended first, so the next record starts a line.
    An ``OSError`` from ``append`` (a full disk) leaves at most a partial last line, which
    :func:`load_journal` skips."""
    path = outdir / JOURNAL_NAME
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")

        def append(records) -> None:
            data = "".join(json.dumps(rec) + "\n" for rec in records).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]

        yield append
    finally:
        os.close(fd)


def earlier_outputs(outdir: Path, journal: dict, current: set[str]) -> list[dict]:
    """Journal records of outputs an earlier run wrote into ``outdir`` that this run did not
    touch (``current``: this run's output paths) and that are still there, complete: the
    manifest lists them too (status ``done``, ``"earlier_run": true``), so it describes every
    output pixelmill wrote in the folder, not only the last run's."""
    found = []
    for rel, rec in journal.items():
        if rel in current or rec.get("status") != "done":
            continue
        try:
            complete = (outdir / rel).stat().st_size == rec.get("size")
        except (OSError, ValueError):
            complete = False
        if complete:
            found.append(dict(rec, earlier_run=True, timings={}))
    return found


def is_up_to_date(outdir: Path, rel_output: str, key: str, journal: dict[str, dict]) -> bool:
    rec = journal.get(rel_output)
    if not rec or rec.get("key") != key or rec.get("status") != "done":
        return False
    try:
        return (outdir / rel_output).stat().st_size == rec.get("size")
    except OSError:
        return False


def record(input_path, step, status, error, *, timings=None, pixels=None) -> dict:
    return {
        "input": str(input_path),
        "op": step.op.label,
        "output": step.rel_output,
        "status": status,
        "error": error,
        "timings": timings or {},
        "pixels": pixels,
        "key": step.key,
    }


def write_manifest(result, s) -> Path:
    """Write ``manifest.json`` atomically; items sorted by input then op order."""
    order = {op.label: i for i, op in enumerate(s.ops)}
    items = sorted(result.items, key=lambda r: (r["input"], order.get(r["op"], 0)))
    # Outputs of earlier runs into this folder, still there: before this run's items (a reader
    # that keeps the last item per input and op then sees this run's).
    items = sorted(getattr(result, "earlier", []), key=lambda r: (r["input"], r["output"])) + items
    manifest = {
        "version": MANIFEST_VERSION,
        "pixelmill": __version__,
        "outdir": str(result.outdir.resolve()),
        "ops": [op.label for op in s.ops],
        "settings": {
            "engine": s.engine, "workers": s.workers, "border": s.border, "cval": s.cval,
            "policy": s.policy, "format": s.format, "quality": s.quality,
        },
        "schedule": result.schedule,
        "summary": result.summary,
        "items": items,
    }
    path = result.outdir / MANIFEST_NAME
    atomic_write(path, lambda fh: fh.write(json.dumps(manifest, indent=1).encode("utf-8")))
    return path


def read_manifest(outdir) -> dict:
    """``OUTDIR/manifest.json`` as :func:`write_manifest` wrote it, its shape checked.

    Raises
    ------
    InvalidParameterError
        When there is no manifest, it is not JSON, or it is not a manifest (the message says
        what to run).
    """
    path = Path(outdir) / MANIFEST_NAME
    if not path.is_file():
        raise InvalidParameterError(
            f"no manifest at {str(path)!r}: run `pixelmill run ... -o {outdir}` first, "
            "then make the contact sheet of that output folder"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(
            f"manifest {str(path)!r} cannot be read as JSON ({exc}); "
            "run `pixelmill run` again to rewrite it"
        ) from None
    check_manifest(manifest)
    return manifest


def check_manifest(manifest) -> list[dict]:
    """The items of ``manifest``, after checking it has the shape :func:`write_manifest` writes."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("items"), list):
        raise InvalidParameterError(
            "manifest must be a JSON object with an 'items' list "
            f"(as written by `pixelmill run`), got {type(manifest).__name__} "
            f"with keys {sorted(manifest) if isinstance(manifest, dict) else None!r}"
        )
    version = manifest.get("version", 1)
    if version != MANIFEST_VERSION:
        raise InvalidParameterError(f"manifest version {version!r} is not supported; expected {MANIFEST_VERSION}")
    items = manifest["items"]
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("input"), str):
            raise InvalidParameterError(
                f"manifest item {i} must be an object with an 'input' path, got {item!r}"
            )
    return items
