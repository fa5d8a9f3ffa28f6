"""What the codec libraries say while decoding and encoding one image, kept with that image.

tifffile, libtiff (through Pillow), Pillow and libpng warn on odd but readable files. A
batch reads images on threads, and ``warnings.catch_warnings`` is process-wide, so the
warnings are routed by thread instead: :func:`collecting` installs (once) a
``warnings.showwarning`` hook and a logging handler for the ``tifffile``, ``PIL`` and
``imagecodecs`` (libpng's and libtiff's warnings) loggers, and gives the calling thread a list that receives what its own decodes and
encodes say. Threads that are not collecting see the libraries' messages as before.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from contextlib import contextmanager

_local = threading.local()
_install_lock = threading.Lock()
_installed = False
_LOGGERS = ("tifffile", "PIL", "imagecodecs")


def _current() -> list[str] | None:
    return getattr(_local, "messages", None)


def _note(message: str) -> bool:
    """Append ``message`` to this thread's collector; False when it is not collecting."""
    messages = _current()
    if messages is None:
        return False
    text = " ".join(str(message).split())
    if text and text not in messages:
        messages.append(text)
    return True


class _ThreadRoutedHandler(logging.Handler):
    def emit(self, record):  # pragma: no cover - exercised through the libraries
        try:
            text = f"{record.name}: {record.getMessage()}"
        except Exception:
            text = f"{record.name}: {record.msg}"
        if not _note(text) and record.levelno >= logging.WARNING and not logging.getLogger().handlers:
            sys.stderr.write(text + "\n")  # what logging's last resort would have printed


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        original = warnings.showwarning

        def showwarning(message, category, filename, lineno, file=None, line=None):
            if not _note(f"{category.__name__}: {message}"):
                original(message, category, filename, lineno, file, line)

        warnings.showwarning = showwarning
        # Every occurrence, not once per code location: each image gets its own.
        warnings.filterwarnings("always", module=r"(tifffile|PIL|imagecodecs)(\.|$)")
        handler = _ThreadRoutedHandler(logging.DEBUG)
        for name in _LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(handler)
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.WARNING)  # Pillow's debug chatter stays out
        _installed = True


@contextmanager
def collecting():
    """``with collecting() as messages:`` the library warnings of this thread's work."""
    _install()
    outer = _current()
    messages: list[str] = []
    _local.messages = messages
    try:
        yield messages
    finally:
        _local.messages = outer
        if outer is not None:
            outer.extend(m for m in messages if m not in outer)


def note(message: str) -> None:
    """Record a pixelmill warning about this image (e.g. metadata that could not be kept);
    a Python warning when no collector runs."""
    if not _note(message):
        warnings.warn(message, stacklevel=2)
