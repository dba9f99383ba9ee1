"""Read the time a met file's path names, by the archive's ``file_format``.

R-STILT formats the start of each file period with ``met_file_format`` and
searches the file paths for the result as a regular expression. Here the same
pattern is turned around once: each strftime field becomes a capturing group, the
text between the fields stays a regular expression, and every file's path
(relative to the met directory) is searched with it. A file whose path matches
is a file of the archive, at the time its fields name; which of them a run needs
is then decided from their headers (:mod:`.files`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from ..errors import MeteorologyError

__all__ = ["NamePattern", "name_pattern"]

# Each field a file name may carry: the digits (or letters) it is written with.
_FIELDS = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "j": r"\d{3}",
    "H": r"\d{2}",
    "M": r"\d{2}",
    "b": r"[A-Za-z]{3}",
}
_DIRECTIVE = re.compile(r"%(.)")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(frozen=True)
class NamePattern:
    """A compiled ``file_format``: which paths belong to the archive, and their times.

    Attributes
    ----------
    file_format : str
        The pattern as configured.
    regex : re.Pattern
        The pattern with each strftime field as a named group, searched (not
        matched whole) in a path relative to the met directory.
    timed : bool
        Whether the pattern has a date field; without one, every matching file
        is a candidate for every run and the headers decide alone.
    """

    file_format: str
    regex: re.Pattern[str]
    timed: bool

    def time_of(self, relative_path: str) -> pd.Timestamp | None:
        """The time ``relative_path`` names: ``NaT`` for an untimed pattern, ``None`` for no match.

        A path whose fields make no date (month 13) does not match.
        """
        match = self.regex.search(relative_path)
        if match is None:
            return None
        if not self.timed:
            return pd.NaT
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            return _timestamp(fields)
        except ValueError:
            return None


def _timestamp(fields: dict[str, str]) -> pd.Timestamp:
    if "Y" in fields:
        year = int(fields["Y"])
    else:
        short = int(fields["y"])
        year = 2000 + short if short < 69 else 1900 + short  # strptime's %y pivot
    hour, minute = int(fields.get("H", 0)), int(fields.get("M", 0))
    if "j" in fields:
        day = pd.Timestamp(year=year, month=1, day=1) + pd.Timedelta(days=int(fields["j"]) - 1)
        if day.year != year:
            raise ValueError("day of year past the year's end")
        return day + pd.Timedelta(hours=hour, minutes=minute)
    month = int(fields.get("m", 0)) or (
        _MONTHS.index(fields["b"].lower()) + 1 if "b" in fields else 1
    )
    return pd.Timestamp(
        year=year, month=month, day=int(fields.get("d", 1)), hour=hour, minute=minute
    )


@lru_cache(maxsize=128)
def name_pattern(file_format: str) -> NamePattern:
    """Compile ``file_format`` (strftime fields in a regular expression) once.

    Fields: ``%Y %y %m %d %j %H %M %b`` and ``%%``. A field used twice (``%Y/%m/%Y%m%d``)
    must name the same value both times.

    Raises
    ------
    MeteorologyError
        For a field it cannot read a time from, a month or day without a year, or
        a pattern that is not a regular expression once its fields are filled.
    """
    parts: list[str] = []
    seen: set[str] = set()
    position = 0
    for match in _DIRECTIVE.finditer(file_format):
        parts.append(file_format[position : match.start()])
        position = match.end()
        field = match.group(1)
        if field == "%":
            parts.append("%")
        elif field not in _FIELDS:
            raise MeteorologyError(
                f"file_format {file_format!r}: %{field} is not a field a met file's time can be "
                f"read from (use {' '.join('%' + f for f in _FIELDS)})"
            )
        elif field in seen:
            parts.append(f"(?P={field})")
        else:
            seen.add(field)
            parts.append(f"(?P<{field}>{_FIELDS[field]})")
    parts.append(file_format[position:])
    if seen and not seen & {"Y", "y"}:
        raise MeteorologyError(
            f"file_format {file_format!r} names no year (%Y or %y): a met file's time "
            "cannot be read from its name"
        )
    if "m" in seen and "b" in seen:
        raise MeteorologyError(f"file_format {file_format!r} names the month twice (%m and %b)")
    try:
        regex = re.compile("".join(parts))
    except re.error as exc:
        raise MeteorologyError(
            f"file_format {file_format!r} is not a regular expression once its strftime "
            f"fields are filled in: {exc}"
        ) from None
    return NamePattern(file_format, regex, timed=bool(seen))
