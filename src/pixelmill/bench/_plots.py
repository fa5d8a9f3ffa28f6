"""Plot helpers: Agg backend, one consistent colour and marker per method, readable defaults."""

from __future__ import annotations

__all__ = ["METHOD_STYLE", "new_figure", "save", "plain_log_axis"]

_COLORS = {
    # pixelmill engines
    "loops": "#7f7f7f", "numpy": "#1f77b4", "numba": "#ff7f0e", "threads": "#2ca02c",
    "processes": "#d62728", "joblib": "#9467bd", "dask": "#8c564b",
    # peers and baselines
    "cv2": "#e377c2", "scipy": "#17becf", "skimage": "#bcbd22", "pillow": "#393b79", "pyvips": "#637939",
    "memcpy": "#000000", "floor": "#000000",
}
_MARKERS = {"loops": "o", "numpy": "s", "numba": "^", "threads": "D", "processes": "v", "joblib": "P",
            "dask": "X", "memcpy": "", "cv2": "o", "scipy": "s", "skimage": "^", "pillow": "D", "pyvips": "v"}
_FALLBACK = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d"]


def METHOD_STYLE(method: str) -> dict:  # noqa: N802 - reads like a table
    """Colour, marker and line style for ``method`` (the base name before any ``-``/``@``)."""
    base = method.split("@")[0].split("-")[0].lower()
    color = _COLORS.get(base) or _FALLBACK[sum(map(ord, base)) % len(_FALLBACK)]
    return {
        "color": color,
        "marker": _MARKERS.get(base, "o"),
        "linestyle": "--" if base in ("memcpy", "floor") else "-",
    }


def new_figure(rows: int = 1, cols: int = 1, *, width: float = 10, height: float = 5.5):
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, never a window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    for ax in axes.flat:
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.12)
    return fig, (axes.flat[0] if rows * cols == 1 else list(axes.flat))


def save(fig, path, *, bottom: float = 0.03) -> None:
    """Lay out (leaving ``bottom`` of the height for a figure legend or note) and write a PNG."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plain_log_axis(axis) -> None:
    """Tick labels on a log axis as plain numbers (0.5, 2, 10) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
