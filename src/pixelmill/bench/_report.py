"""From records to files: analyses, plots, targets, results.csv/json and report.md.

Everything here is computed from the header and the records, so :func:`rerender` rebuilds
the plots, the targets and the report from a results.json alone.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from .._text import md_table
from ._extra import require
from ._records import SCHEMA_VERSION, Record, load_results, write_csv, write_json
from ._suites import SUITES, compute_targets, suite_module
from ._targets import targets_table

__all__ = ["write_outputs", "rerender", "QUICK_CAVEAT"]

#: What a quick run's figures are worth, said with them (report.md and `pixelmill bench --quick`).
QUICK_CAVEAT = ("a quick run (a 12-photo library of 1 MP, 1-2 MP images, 3 repeats) is only indicative: "
                "pools and numba do not pay off on such small work, so several targets miss; it leaves out "
                "processes, joblib and dask, and numba until its kernels are compiled on this machine (`pixelmill "
                "calibrate` compiles them; --engine names an engine to time); the targets are judged on the "
                "full run (`pixelmill bench -o DIR`), whose results the README gives")


def _suite_names(header, records) -> list[str]:
    names = list(header.get("suites") or [])
    for r in records:
        if r.suite not in names and r.suite in SUITES:
            names.append(r.suite)
    return names


def write_outputs(outdir, header: dict, records: list[Record]) -> tuple[dict, dict[str, Path]]:
    """Write results.csv, results.json, one PNG per suite and report.md into ``outdir``."""
    outdir = Path(outdir)
    opts = header["options"]
    files: dict[str, Path] = {}
    analyses, plots, errors = {}, {}, {}
    for name in _suite_names(header, records):
        module = suite_module(name)
        mine = [r for r in records if r.suite == name]
        try:
            analyses[name] = module.analyse(mine, opts)
        except Exception as exc:  # noqa: BLE001 - a report with a hole beats no report
            analyses[name] = {"conclusions": [f"(analysis failed: {type(exc).__name__}: {exc})"]}
            errors[name] = traceback.format_exc()
        png = outdir / f"{name}.png"
        try:
            module.plot(mine, analyses[name], png, opts)
            plots[name] = png.name
            files[f"plot:{name}"] = png
        except Exception as exc:  # noqa: BLE001
            errors[f"{name} plot"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    targets = compute_targets(records, analyses, opts)
    document = {
        "schema": SCHEMA_VERSION,
        "header": header,
        "conclusions": {k: v.get("conclusions", []) for k, v in analyses.items()},
        "analysis": {k: {kk: vv for kk, vv in v.items() if kk != "conclusions"} for k, v in analyses.items()},
        "targets": targets,
        "plots": plots,
        "report_errors": errors,
        "records": [r.to_dict() for r in records],
    }
    files["csv"] = write_csv(outdir / "results.csv", records)
    files["json"] = write_json(outdir / "results.json", document)
    files["report"] = _write_report(outdir / "report.md", header, records, analyses, plots, targets, errors)
    return document, files


def rerender(outdir) -> tuple[dict, dict[str, Path]]:
    """Rebuild plots, targets and report.md (and the JSON's derived sections) from results.json."""
    require(("matplotlib",))
    document, records = load_results(Path(outdir) / "results.json")
    return write_outputs(outdir, document["header"], records)


# -- report.md ---------------------------------------------------------------------------------------------


def _fmt_versions(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items() if v) + (
        "; not installed: " + ", ".join(k for k, v in versions.items() if not v)
        if any(not v for v in versions.values()) else ""
    )


def _write_report(path: Path, header, records, analyses, plots, targets, errors) -> Path:
    opts = header["options"]
    m = header["machine"]
    mode = "quick" if opts.get("quick") else "default"
    out = [f"# pixelmill bench results ({mode})", ""]
    out.append(
        f"Run on {header['timestamp']} with `{header.get('command') or 'pixelmill bench'}`; "
        f"{len(records)} records in {header.get('wall_seconds', 0):.0f} s."
    )
    if opts.get("quick"):
        out += ["", f"**Quick run**: {QUICK_CAVEAT}."]
    out += ["", "## Conclusions", ""]
    for name, a in analyses.items():
        for sentence in a.get("conclusions", []):
            out.append(f"- **{name}**: {sentence}")
    out += ["", "## Machine and software", ""]
    out.append(md_table(["", ""], [
        ["CPU", m.get("cpu_model")],
        ["cores", f"{m.get('usable_cores')} usable, {m.get('logical_cores')} logical, {m.get('physical_cores')} physical"],
        ["memory", f"{m.get('memory_total_gb')} GB ({m.get('memory_available_gb')} GB available at the start)"],
        ["platform", m.get("platform")],
        ["Python", f"{m.get('python')} ({m.get('python_implementation')})"],
        ["libraries", _fmt_versions(header.get("versions", {}))],
        ["library", header.get("library", {}).get("description")],
        ["engines", ", ".join(opts.get("engines", []))],
    ]))
    out += ["", "## How it was measured", ""]
    out.append(f"- **Timing**: {header['timing_method']} Repeats: {opts['repeats']}, warm-up runs: {opts['warmup']}, "
               f"budget per measurement: {opts['budget_s']:g} s.")
    out.append(f"- **Memory**: {header['memory_method']}")
    out.append(f"- **Isolation**: {header['isolation']}.")
    out.append("- **Checks**: every timed method's output (the last timed run) is compared with a reference; "
               "each table's *check* column gives the largest absolute difference and whether it is within "
               "the stated tolerance (`tolerance` in results.csv).")
    out += ["", "## Targets", "", targets_table(targets)]
    cal = header.get("calibration")
    if cal:
        out += ["", "## engine='auto': this run's calibration", "",
                f"Measured at the start of the run in {cal['seconds']:.1f} s (`pixelmill calibrate` shows the same "
                "table): the fastest candidate per kind of work and image size, which `auto` then uses. Times are "
                "the fastest of several runs on synthetic RGB uint8 images.", "",
                md_table(["work", "megapixels", "fastest", "its ms", "numpy ms"], cal["table"])]
    for name in analyses:
        module = suite_module(name)
        mine = [r for r in records if r.suite == name]
        out += ["", f"## {name}: {module.TITLE}", ""]
        doc = (module.__doc__ or "").strip().split("\n\n")
        out.append(" ".join(" ".join(doc[1:]).split()) if len(doc) > 1 else "")
        if header.get("inputs", {}).get(name):
            out += ["", f"Inputs: {header['inputs'][name]}."]
        if name in plots:
            out += ["", f"![{name}]({plots[name]})"]
        out += ["", "Conclusions:", ""]
        out += [f"- {s}" for s in analyses[name].get("conclusions", [])] or ["- (none)"]
        try:
            out += ["", module.table(mine, analyses[name], opts)]
        except Exception as exc:  # noqa: BLE001
            out += ["", f"(table failed: {type(exc).__name__}: {exc})"]
        odd = [r for r in mine if r.status != "ok"]
        if odd:
            out += ["", "Not measured:", ""]
            for r in odd:
                first = (r.notes or "").strip().splitlines()[0] if r.notes else ""
                out.append(f"- {r.method} / {r.case}: {r.status}" + (f" — {first[:300]}" if first else ""))
    if errors:
        out += ["", "## Report errors", ""]
        out += [f"- {k}: {v.splitlines()[0] if v else ''}" for k, v in errors.items()]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
