"""What the suites share during one run: options, work folder, library, decoded inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ._library import large_image, load_rgb, megapixels, pick, save_array

__all__ = ["Context"]


@dataclass
class Context:
    """One benchmark run's shared state (lives in the parent process only).

    ``inputs`` collects, per suite, a description of what it ran on (for the header and the
    report); ``cache`` keeps prepared inputs that several suites reuse.
    """

    opts: dict
    workdir: Path
    library: list[Path]
    library_desc: str
    progress: Callable[[str], None] = print
    inputs: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)

    def sample(self, n: int) -> list[dict]:
        """The first ``n`` picked images, decoded once into ``.npy`` files (cached).

        Returns ``[{"source", "npy", "mp", "shape"}]``; sample sizes are prefixes of one pick.
        """
        have = self.cache.setdefault("sample", [])
        if len(have) < n:
            paths = pick(self.library, n, seed=self.opts["seed"])
            for k in range(len(have), n):
                arr = load_rgb(paths[k])
                have.append({
                    "source": str(paths[k]),
                    "npy": save_array(self.workdir / "inputs", f"sample_{k:04d}", arr),
                    "mp": megapixels(arr),
                    "shape": list(arr.shape),
                })
        return have[:n]

    def image(self, target_mp: float) -> dict:
        """A large RGB image of about ``target_mp`` MP (cached): ``{"npy", "mp", "shape", "source"}``."""
        key = ("image", round(float(target_mp), 3))
        if key not in self.cache:
            arr, desc = large_image(self.library, target_mp)
            name = f"image_{target_mp:g}mp".replace(".", "_")
            self.cache[key] = {
                "npy": save_array(self.workdir / "inputs", name, arr),
                "mp": megapixels(arr),
                "shape": list(arr.shape),
                "source": desc,
            }
        return self.cache[key]

    def reference(self, image: dict, spec: str, kind: str = "oracle") -> dict:
        """The reference for ``spec`` on ``image`` (cached ``.npy``): ``{"npy", "name", "tolerance"}``.

        ``kind="oracle"``: the independent float64 oracle (for pixelmill engines);
        ``kind="pixelmill-uint8"``: pixelmill's numpy-engine result converted to uint8 with the
        operation's default policy (what the peers are compared with).
        """
        import numpy as np

        from ._library import load_array
        from ._ops import float_tolerance, make_op, numpy_result, oracle, uint8_result

        key = ("ref", image["npy"], spec, kind)
        if key in self.cache:
            return self.cache[key]
        arr = load_array(image["npy"])
        tag = f"{Path(image['npy']).stem}__{spec}__{kind}".replace(":", "_").replace(",", "_").replace("=", "")
        if kind == "oracle":
            ref, name = oracle(arr, spec)
            tol = 0.0 if ref.dtype.kind in "ui" else float_tolerance(ref)
        else:
            ref = uint8_result(numpy_result(make_op(spec), arr), spec)
            name = "pixelmill numpy engine, converted to uint8 with the operation's default policy"
            tol = 1.0
        assert isinstance(ref, np.ndarray)
        self.cache[key] = {"npy": save_array(self.workdir / "refs", tag, ref), "name": name, "tolerance": tol}
        return self.cache[key]

    def spec_common(self) -> dict:
        o = self.opts
        return {"repeats": o["repeats"], "warmup": o["warmup"], "budget_s": o["budget_s"],
                "min_timed_s": o["min_timed_s"], "min_pairs": o["min_pairs"]}
