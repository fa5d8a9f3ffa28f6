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


_FILTER = r"(tifffile|PIL|imagecodecs)(\.|$)"
_handler: logging.Handler | None = None


def _showwarning_hook(original):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not _note(f"{category.__name__}: {message}"):
            original(message, category, filename, lineno, file, line)

    showwarning._pixelmill = True
    return showwarning


def _install() -> None:
    """Install the hooks, again if someone (``warnings.catch_warnings``) has put theirs back."""
    global _handler
    if getattr(warnings.showwarning, "_pixelmill", False) and _has_filter():
        return
    with _install_lock:
        if not getattr(warnings.showwarning, "_pixelmill", False):
            warnings.showwarning = _showwarning_hook(warnings.showwarning)
        if not _has_filter():
            # Every occurrence, not once per code location: each image gets its own. Appended,
            # so that the application's own filters (an "ignore", say) still come first.
            warnings.filterwarnings("always", module=_FILTER, append=True)
        if _handler is None:
            _handler = _ThreadRoutedHandler(logging.DEBUG)
            for name in _LOGGERS:
                logger = logging.getLogger(name)
                logger.addHandler(_handler)
                if logger.level == logging.NOTSET:
                    logger.setLevel(logging.WARNING)  # Pillow's debug chatter stays out


def _has_filter() -> bool:
    return any(f[0] == "always" and f[3] is not None and getattr(f[3], "pattern", None) == _FILTER
               for f in warnings.filters)


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


# libtiff (inside Pillow) prints its warnings on the C stderr, file descriptor 2, out of
# Python's reach. Around Pillow's TIFF decodes and encodes, fd 2 is pointed at a temporary
# file: libtiff's lines become this image's warnings, and anything else written there
# meanwhile (another thread's output) is passed on afterwards. One block at a time: fd 2 is
# the process's.
_FD_LOCK = threading.RLock()  # re-entrant: a nested capture restores the outer one


@contextmanager
def c_stderr_captured():
    """Capture what C code writes on file descriptor 2 during the block (see above)."""
    import os
    import tempfile

    with _FD_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no fd 2 (embedded): nothing to capture
            yield
            return
        tmp = tempfile.TemporaryFile()
        try:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
        finally:
            os.close(saved)
            tmp.close()
    other = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not _note(f"libtiff: {line.strip()}"):
            other.append(line)
    if other:
        sys.stderr.write("\n".join(other) + "\n")
