"""The error raised for unreadable or inconsistent training data."""


class DataError(ValueError):
    """A data file or data set is malformed; messages name files, columns and lines, never record text."""
