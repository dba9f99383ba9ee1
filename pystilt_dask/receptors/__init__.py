"""Receptors: where and when a measurement was made, and their simulation ids.

A receptor's id names everything that changes its run, so two receptors share an
id exactly when they are the same receptor:

- point: ``yyyymmddHHMM_<lon>_<lat>_<altitude>``, R-STILT's id;
- column: ``yyyymmddHHMM_<lon>_<lat>_X<bottom>-<top>``, as PYSTILT writes it;
- multipoint: ``yyyymmddHHMM_multi_<hash>``, ``<hash>`` the first 10 hex digits of
  the SHA-256 of its sorted points (lon, lat rounded to 1e-5 degrees, altitude to
  1 cm); PYSTILT's hash is another.

Numbers print like R's ``as.character`` (15 significant digits, no trailing zeros),
and a receptor keeps its numbers as printed: ``-111.84800000000001`` is
``-111.848``, and longitudes lie in [-180, 180) (``248.152`` is ``-111.848``). A
time with seconds stamps them too (``yyyymmddHHMMSS``): HYSPLIT releases on the
minute, but footprint layers count from the receptor's time, as in R-STILT.
"""

from .frame import ReceptorFrame
from .models import (
    ColumnReceptor,
    MultiPointReceptor,
    PointReceptor,
    Receptor,
    canonical_longitude,
    canonical_number,
    format_number,
    parse_time,
)
from .table import (
    ReceptorsMerged,
    read_receptor_frame,
    read_receptors,
    receptor_frame,
    receptor_rows,
    receptors_from_frame,
)

__all__ = [
    "ColumnReceptor",
    "MultiPointReceptor",
    "PointReceptor",
    "Receptor",
    "ReceptorFrame",
    "ReceptorsMerged",
    "canonical_longitude",
    "canonical_number",
    "format_number",
    "parse_time",
    "read_receptor_frame",
    "read_receptors",
    "receptor_frame",
    "receptor_rows",
    "receptors_from_frame",
]
