"""The exceptions of :mod:`swatlib.data`.

Every message is one line that names the file at fault and the command that fixes it, so that a
notebook or ``make data`` failing on a fresh machine tells the reader what to type next.
"""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are in none of the data directories (:func:`swatlib.data.data_dirs`)."""


class CorruptDataError(ValueError):
    """A data file exists but is malformed, truncated, or fails its checksum."""


class DownloadError(OSError):
    """A download could not be completed; nothing was kept."""
