"""The record of a batch: the journal (one line per finished output, appended as it finishes, so
a killed run resumes) and ``manifest.json`` (every item of the run), written and read here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .._version import __version__
from ..errors import InvalidParameterError
from .._files import atomic_write

__all__ = ["MANIFEST_NAME", "JOURNAL_NAME", "MANIFEST_VERSION", "check_manifest", "write_manifest", "read_manifest", "load_journal", "is_up_to_date",
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


def load_journal(outdir: Path) -> dict[str, dict]:
    """Latest journal record per output path (relative)."""
    records: dict[str, dict] = {}
    journal = outdir / JOURNAL_NAME
    if not journal.exists():
        return records
    with open(journal, encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if isinstance(rec, dict) and "output" in rec:
                records[rec["output"]] = rec
    return records


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
