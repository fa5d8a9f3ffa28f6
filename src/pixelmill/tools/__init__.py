"""Tools built on the public library: the contact sheet of a batch's output folder and a
sample library of photo-like JPEGs to run batches and benchmarks on."""

from .sample import ASPECT_RATIOS, PHOTO_LIBRARY, sample_sizes, source_photos, write_sample_library
from .sheet import SheetGeometry, sheet_geometry, sheet_layout, write_contact_sheet

__all__ = [
    "write_contact_sheet",
    "sheet_layout",
    "sheet_geometry",
    "SheetGeometry",
    "write_sample_library",
    "sample_sizes",
    "source_photos",
    "PHOTO_LIBRARY",
    "ASPECT_RATIOS",
]
