"""Footprint grids, and the limits a footprint of one simulation must stay within."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ..footprint import crs
from ..footprint.grid import Grid
from ..footprint.transforms import AveragingKernel, PressureWeighting, Transform
from .hysplit import HysplitConfig
from .sections import Section

#: Most cells a footprint grid may have per layer (a layer of 10⁸ float32 cells is 400 MB).
MAX_CELLS = 100_000_000
#: Largest footprint of one simulation, in bytes (its hourly layers as float32).
MAX_FOOTPRINT_BYTES = 4 * 2**30


class FootprintConfig(Section):
    """One named footprint grid.

    Parameters
    ----------
    xmin, xmax, ymin, ymax : float
        Grid bounds in degrees (longitude/latitude), also for projected grids.
    xres : float
        Cell width, in the units of the projection's axes (degrees when geographic).
    yres : float or None
        Cell height; ``None`` means ``xres``.
    projection : str
        CRS of the grid: anything :meth:`pyproj.CRS.from_user_input` reads (a PROJ
        string, ``"EPSG:32612"``, WKT). Geographic CRSs (``+proj=longlat``,
        ``EPSG:4326``, ``OGC:CRS84``) give a longitude/latitude grid.
    smooth_factor : float
        Scale of the Gaussian kernel bandwidth; 0 disables smoothing.
    time_integrate : bool
        Sum all hours into one layer stamped at the receptor time.
    transforms : tuple of Transform
        Reweightings of the particles' ``foot`` applied in order before gridding
        (:mod:`pystilt_dask.footprint.transforms`): ``averaging_kernel``,
        ``pressure_weighting``, ``first_order_lifetime`` or your own class by import path.
    """

    xmin: float
    xmax: float
    ymin: float
    ymax: float
    xres: float = Field(gt=0)
    yres: float | None = Field(None, gt=0)
    projection: str = "+proj=longlat"
    smooth_factor: float = Field(1.0, ge=0)
    time_integrate: bool = False
    transforms: tuple[Transform, ...] = ()

    @field_validator("projection")
    @classmethod
    def _readable_projection(cls, value: str) -> str:
        crs.parse(value)  # raises ValueError naming the projection
        return value

    @model_validator(mode="after")
    def _resolve(self) -> FootprintConfig:
        if self.yres is None:
            object.__setattr__(self, "yres", self.xres)
        if self.ymax <= self.ymin:
            raise ValueError(f"ymax ({self.ymax}) must exceed ymin ({self.ymin})")
        # R-STILT's way across the antimeridian: xmin east of it, xmax west (170, -170).
        crossing = self.is_longlat and self.xmin >= 0 > self.xmax
        if self.xmax <= self.xmin and not crossing:
            raise ValueError(
                f"xmax ({self.xmax}) must exceed xmin ({self.xmin}); a grid across the "
                "antimeridian goes from an xmin east of it to an xmax west of it (170, -170)"
            )
        units = crs.axis_units(self.projection)
        if units == "metre" and min(self.xres, self.yres) < 1:
            raise ValueError(
                f"xres/yres ({self.xres:g}, {self.yres:g}) are metres in this projection: "
                "cells under 1 m (degrees where metres were meant? 0.01° is about 1000 m)"
            )
        grid = Grid.from_config(self)
        if grid.nx * grid.ny > MAX_CELLS:
            raise ValueError(
                f"the grid has {grid.nx} x {grid.ny} cells, more than {MAX_CELLS:.0e}: "
                "a coarser xres/yres or smaller bounds"
            )
        return self

    def needed_variables(self) -> set[str]:
        """The particle variables (``varsiwant`` codes) the transforms read."""
        needed = set()
        for transform in self.transforms:
            if isinstance(transform, PressureWeighting):
                needed |= {"pres", "zagl"}
            elif isinstance(transform, AveragingKernel) and transform.coordinate == "pres":
                needed.add("pres")
        return needed

    @property
    def is_longlat(self) -> bool:
        """Whether the grid is in geographic coordinates."""
        return crs.is_geographic(self.projection)


def check_footprints(
    footprints: dict[str, FootprintConfig], hysplit: HysplitConfig, where: str
) -> None:
    """Refuse footprints too large per simulation, or whose transforms lack their variables."""
    for name, footprint in footprints.items():
        grid = Grid.from_config(footprint)
        layers = 1 if footprint.time_integrate else abs(hysplit.n_hours) + 1
        size = layers * grid.nx * grid.ny * 4
        if size > MAX_FOOTPRINT_BYTES:
            raise ValueError(
                f"{where} {name!r}: {layers} hourly layers of {grid.nx} x {grid.ny} cells "
                f"are {size / 2**30:.0f} GiB per simulation, more than "
                f"{MAX_FOOTPRINT_BYTES // 2**30} GiB: fewer hours (hysplit.n_hours), a "
                "coarser grid, or time_integrate"
            )
        missing = sorted(footprint.needed_variables() - set(hysplit.varsiwant))
        if missing:
            raise ValueError(
                f"{where} {name!r}: its transforms need hysplit.varsiwant to include {missing}"
            )
