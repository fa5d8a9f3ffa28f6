"""One error hierarchy for pixelmill.

Every error pixelmill raises on purpose is a :class:`PixelmillError`; each subclass also
inherits the built-in exception it means, so callers can catch either.
"""

from __future__ import annotations

__all__ = [
    "PixelmillError",
    "InvalidParameterError",
    "InvalidKernelError",
    "InvalidImageError",
    "UnsupportedImageError",
    "ImageTooLargeError",
    "MissingDependencyError",
    "UnsafeOutputError",
    "ClusterConnectionError",
    "EngineError",
    "OutputFolderBusyError",
    "BatchInterrupted",
]


class PixelmillError(Exception):
    """Base class of every error pixelmill raises on purpose."""


class InvalidParameterError(PixelmillError, ValueError):
    """A parameter has a value that is not accepted (the message names it)."""


class InvalidKernelError(InvalidParameterError):
    """A kernel is empty, non-numeric, not finite, not 2-D, too large, or unknown."""


class InvalidImageError(PixelmillError, ValueError):
    """An image file or array cannot be read or used (corrupt, truncated, wrong shape)."""


class UnsupportedImageError(InvalidImageError):
    """An image is readable but its mode, dtype or format is not supported."""


class ImageTooLargeError(InvalidImageError):
    """An image has more pixels than the configured limit (decompression-bomb guard)."""


class MissingDependencyError(PixelmillError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class UnsafeOutputError(PixelmillError, ValueError):
    """An output location would overwrite or sit inside the inputs."""


class ClusterConnectionError(PixelmillError, ConnectionError):
    """An engine cannot reach the cluster scheduler it was given (the message names the address)."""


class EngineError(PixelmillError, RuntimeError):
    """An engine could not finish its work (a worker process died, a pool broke)."""


class OutputFolderBusyError(PixelmillError, RuntimeError):
    """Another run holds the output folder's lock (the message names its pid)."""


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by SIGINT or SIGTERM, after writing the manifest of what it did.

    A :class:`KeyboardInterrupt`, so code that stops on Ctrl-C still does; ``signal`` is the
    signal's number, ``result`` the :class:`~pixelmill.batch.BatchResult` so far (finished items,
    and the rest as ``not_done``), ``manifest_error`` why the manifest could not be written, or None.
    """

    def __init__(self, signal: int, result, manifest_error: str | None = None):
        super().__init__(signal)
        self.signal = signal
        self.result = result
        self.manifest_error = manifest_error
