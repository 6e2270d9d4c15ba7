"""The error raised for unreadable or inconsistent training data."""

from aslora_core.mistakes import FixableError


class DataError(FixableError, ValueError):
    """A data file or data set is malformed; messages name files, columns and lines, never record text."""

    fix = (
        "correct the data file at the line named above (its columns are the config's [data] fields, its "
        "labels the run's labels), then run `aslora silo check --config FILE`"
    )
