"""Observations in: satellite and TCCON soundings to receptors and kernel tables.

PYSTILT's ``stilt.observations`` names and table columns, so tables and scripts
move between the two (see docs/observations.md).

Before a run:

- read a product into a table of soundings (:data:`SOUNDING_SCHEMA`):
  :func:`read_oco2`, :func:`read_tropomi_ch4`, :func:`read_ggg_netcdf`
  (:func:`read_tccon`), :func:`read_ggg_oof`; many files at once into a dask
  DataFrame with :func:`read_soundings`;
- choose soundings: :func:`group_by_overpass`, :func:`select_observations_spatial`;
- make receptors and their averaging kernels: :func:`receptors_from_soundings`,
  with :func:`slant_points`, :func:`pressure_altitudes` and :func:`jitter_points`
  for other layouts.

After a run: :func:`modelled_columns` (every sounding's modelled column beside
the observed one, lazily; :func:`modelled_points` for towers) from
:func:`modelled_column`, and :func:`plume_polygon` with :func:`plume_background`
for a background from the soundings beside a plume.
"""

from .columns import modelled_column
from .ggg import read_ggg_netcdf, read_ggg_oof, read_tccon
from .modelled import modelled_columns, modelled_points
from .oco import read_oco2
from .parallel import read_soundings
from .placement import jitter_points, pressure_altitudes, slant_points
from .plumes import Plume, PlumeBackground, kernel_density, plume_background, plume_polygon
from .receptors import receptors_from_soundings
from .schema import SOUNDING_SCHEMA, check_soundings
from .selection import group_by_overpass, select_observations_spatial
from .tropomi import read_tropomi_ch4

__all__ = [
    "SOUNDING_SCHEMA",
    "Plume",
    "PlumeBackground",
    "check_soundings",
    "group_by_overpass",
    "jitter_points",
    "kernel_density",
    "modelled_column",
    "modelled_columns",
    "modelled_points",
    "plume_background",
    "plume_polygon",
    "pressure_altitudes",
    "read_ggg_netcdf",
    "read_ggg_oof",
    "read_oco2",
    "read_soundings",
    "read_tccon",
    "read_tropomi_ch4",
    "receptors_from_soundings",
    "select_observations_spatial",
    "slant_points",
]
