"""Project configuration: the science settings of a STILT project, validated by pydantic.

A project's ``config.yaml`` maps one to one onto :class:`ModelConfig`. Unknown keys
are rejected with a did-you-mean hint; relative paths resolve against the
directory of the config file. Deployment settings (scratch, caches) are not here:
they live in ``dask.config`` under ``stilt`` (see :mod:`pystilt_dask.defaults`).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..errors import ConfigError, MeteorologyError
from ..fingerprint import transport_changes
from ..footprint import crs
from ..footprint.grid import Grid
from ..footprint.transforms import AveragingKernel, PressureWeighting, Transform
from ..meteorology.names import name_pattern

#: The particle variables R-STILT writes by default (``run_stilt.r``).
DEFAULT_VARSIWANT = (
    "time", "indx", "long", "lati", "zagl", "foot", "mlht", "dens", "samt", "sigw", "tlgr",
)  # fmt: skip

#: Every code R-STILT's ``validate_varsiwant`` accepts.
KNOWN_VARSIWANT = (
    "time", "indx", "long", "lati", "zagl", "sigw", "tlgr", "zsfc", "icdx", "temp", "samt",
    "foot", "shtf", "tcld", "dmas", "dens", "rhfr", "sphu", "lcld", "zloc", "dswf", "wout",
    "mlht", "rain", "crai", "pres", "whtf", "temz", "zcfx",
)  # fmt: skip

#: Variables the near-field (hnf_plume) correction needs.
HNF_VARIABLES = ("dens", "samt", "sigw", "tlgr", "foot", "mlht")


#: Most cells a footprint grid may have per layer (a layer of 10⁸ float32 cells is 400 MB).
MAX_CELLS = 100_000_000
#: Largest footprint of one simulation, in bytes (its hourly layers as float32).
MAX_FOOTPRINT_BYTES = 4 * 2**30
#: Longest run, in hours either way (a year).
MAX_HOURS = 8784
#: Most particles per release (R-STILT runs use hundreds to a few thousand).
MAX_PARTICLES = 10_000_000
#: Most realizations of an ensemble.
MAX_REALIZATIONS = 1000

WIND_ERROR_FIELDS = ("siguverr", "tluverr", "zcoruverr", "horcoruverr")
ZI_ERROR_FIELDS = ("sigzierr", "tlzierr", "horcorzierr")


class _Section(BaseModel):
    """A frozen config section that rejects unknown keys with a did-you-mean hint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    close = difflib.get_close_matches(str(key), sorted(known), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise ValueError(f"unknown key {key!r} in {cls.__name__}{hint}")
        return data


class MetConfig(_Section):
    """Where one meteorology archive lives and how its files are named.

    Parameters
    ----------
    directory : str
        Directory holding ARL files (searched recursively, symlinks followed), or
        the URL of one anywhere fsspec reaches (``s3://bucket/hrrr``,
        ``https://host/arl/``): listed there, headers read with range requests,
        the files a run reads fetched into the node's met cache (``stilt.met-cache``).
    file_format : str
        R-STILT's ``met_file_format``: strftime fields (``%Y %y %m %d %j %H %M %b``)
        inside a regular expression, searched in each file's path relative to
        ``directory``: ``"%Y%m%d_%H"``, ``"%Y/%m/%d/hrrr_%H"``, ``"%Y%m%d.*hrrr"``. A
        file whose path matches belongs to the archive, at the time its fields
        name; which files a run needs is decided from their headers.
    file_tres : str, optional
        R-STILT's ``met_file_tres``. Accepted so that older configs load; not used,
        since the period of each file comes from its header.
    storage_options : dict, optional
        Options of the fsspec filesystem of a URL ``directory`` (credentials,
        ``endpoint_url``, ``anon``…); unused for a local one.
    """

    directory: str
    file_format: str
    file_tres: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("file_format")
    @classmethod
    def _parse_format(cls, value: str) -> str:
        try:
            name_pattern(value)
        except MeteorologyError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("file_tres")
    @classmethod
    def _parse_tres(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            if pd.Timedelta(value) <= pd.Timedelta(0):
                raise ValueError
        except ValueError:
            raise ValueError(f"file_tres {value!r} is not a positive duration like '6h'") from None
        return value


class NestConfig(_Section):
    """Several met archives read together, HYSPLIT's nested grids.

    Parameters
    ----------
    nest : list of str
        Names of archives in ``mets``, finest grid first: HYSPLIT moves a particle
        on the first grid that holds it, so particles leaving the inner grid go on
        on the outer one.
    """

    nest: tuple[str, ...] = Field(min_length=2)


#: The kinds of ``mets`` entries, as pydantic tags them.
_MET_KINDS = ("archive", "nest")


def _met_kind(value: Any) -> str:
    nest = isinstance(value, NestConfig) or (isinstance(value, dict) and "nest" in value)
    return _MET_KINDS[nest]


#: A ``mets`` entry: one archive, or a nest of archives named in ``mets``.
MetEntry = Annotated[
    Annotated[MetConfig, Tag("archive")] | Annotated[NestConfig, Tag("nest")],
    Discriminator(_met_kind),
]


class HysplitConfig(_Section):
    """HYSPLIT-STILT settings, with R-STILT ``run_stilt.r`` defaults.

    Every SETUP.CFG namelist key is a lower-case field with R-STILT's default.
    Departures from ``run_stilt.r``: ``maxpar`` defaults to ``numpar`` times the
    number of release points (``run_stilt.r`` uses ``numpar``, which starves
    multipoint receptors), and ``seed`` is new (``KRAND=2, SEED=-(|seed|+1)``, the
    PYSTILT convention), giving byte-identical particles for equal seeds.

    Parameters
    ----------
    executable : str or None
        Path of ``hycs_std``; ``None`` resolves it from ``$STILT_HYSPLIT_EXE``, then
        ``PATH``, then the ``pystilt`` wheel (see :func:`pystilt_dask.hysplit.resolve_hysplit`).
    n_hours : int
        Run length in hours; negative runs backward in time.
    numpar : int
        Particles released per simulation.
    seed : int or None
        Random seed. Setting it implies ``krand=2``.
    realizations : int
        Runs of every simulation, realization ``k`` with ``seed + k`` (PYSTILT's
        ensembles); realization 0 is the plain run. More than one needs a seed. Not
        a result setting: raising it adds realizations and keeps what exists.
    hnf_plume : bool
        Apply the hyper-near-field plume dilution correction.
    veght : float
        Fraction of the mixed-layer height (<= 1) below which particles touch the surface.
    varsiwant : tuple of str
        Particle variables HYSPLIT writes.
    timeout : float
        Seconds before a HYSPLIT run is killed.
    emisshrs, w_option, z_top :
        CONTROL-file settings (release duration in hours, vertical motion option, model top in m).
    ziscale : list of float or None
        Hourly mixed-layer height scale factors (written to ZICONTROL).
    siguverr, tluverr, zcoruverr, horcoruverr : float or None
        Horizontal wind-error statistics (WINDERR); all four or none.
    sigzierr, tlzierr, horcorzierr : float or None
        Mixed-layer height error statistics (ZIERR); all three or none.
    """

    # Run settings (CONTROL and the Python wrapper).
    executable: str | None = None
    n_hours: int = Field(-24, ge=-MAX_HOURS, le=MAX_HOURS)
    numpar: int = Field(1000, gt=0, le=MAX_PARTICLES)
    seed: int | None = None
    realizations: int = Field(1, ge=1, le=MAX_REALIZATIONS)
    hnf_plume: bool = True
    timeout: float = Field(3600, gt=0)
    emisshrs: float = 0.01
    w_option: int = 0
    z_top: float = 25000.0
    varsiwant: tuple[str, ...] = DEFAULT_VARSIWANT
    ziscale: tuple[float, ...] | None = None
    # Transport error (Lin & Gerbig 2005).
    siguverr: float | None = None
    tluverr: float | None = None
    zcoruverr: float | None = None
    horcoruverr: float | None = None
    sigzierr: float | None = None
    tlzierr: float | None = None
    horcorzierr: float | None = None
    # SETUP.CFG namelist.
    capemin: float = -1
    cmass: int = 0
    conage: int = 48
    cpack: int = 1
    delt: float = 1
    dxf: float = 1
    dyf: float = 1
    dzf: float = 0.01
    efile: str = ""
    frhmax: int = 3
    frhs: float = 1
    frme: float = 0.1
    frmr: int = 0
    frts: float = 0.1
    frvs: float = 0.01
    hscale: float = 10800
    ichem: int = 8
    idsp: int = 2
    initd: int = 0
    k10m: int = 1
    kagl: int = 1
    kbls: int = 1
    kblt: int = 5
    kdef: int = 0
    khinp: int = 0
    khmax: int = 9999
    kmix0: float = 150
    kmixd: int = 3
    kmsl: int = 0
    kpuff: int = 0
    krand: int = 4
    krnd: int = 6
    kspl: int = 1
    kwet: int = 1
    kzmix: int = 0
    maxdim: int = 1
    maxpar: int | None = None
    mgmin: int = 10
    mhrs: int = 9999
    nbptyp: int = 1
    ncycl: int = 0
    ndump: int = 0
    ninit: int = 1
    nstr: int = 0
    nturb: int = 0
    nver: int = 0
    outdt: float = 0
    p10f: int = 1
    pinbc: str = ""
    pinpf: str = ""
    poutf: str = ""
    qcycle: float = 0
    rhb: int = 80
    rht: int = 60
    splitf: int = 1
    tkerd: float = 0.18
    tkern: float = 0.18
    tlfrac: float = 0.1
    tout: float = 0
    tratio: float = 0.75
    tvmix: float = 1
    veght: float = 0.5
    vscale: float = 200
    vscaleu: float = 200
    vscales: float = -1
    wbbh: float = 0
    wbwf: float = 0
    wbwr: float = 0
    wvert: bool = False

    @field_validator("n_hours")
    @classmethod
    def _nonzero_hours(cls, value: int) -> int:
        if value == 0:
            raise ValueError("n_hours must not be 0 (negative runs backward, positive forward)")
        return value

    @field_validator("varsiwant")
    @classmethod
    def _known_variables(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in KNOWN_VARSIWANT]
        if unknown:
            raise ValueError(
                f"unknown varsiwant codes {unknown}; known: {', '.join(KNOWN_VARSIWANT)}"
            )
        missing = [v for v in ("time", "indx", "long", "lati", "foot") if v not in value]
        if missing:
            raise ValueError(f"varsiwant must include {missing} (the footprint needs them)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HysplitConfig:
        if self.seed is not None:
            if "krand" in self.model_fields_set and self.krand != 2:
                raise ValueError("seed needs krand=2 (reproducible stream); remove krand or set 2")
            object.__setattr__(self, "krand", 2)
        self._check_realizations()
        if self.hnf_plume:
            missing = [v for v in HNF_VARIABLES if v not in self.varsiwant]
            if missing:
                raise ValueError(f"hnf_plume needs varsiwant to include {missing}")
        for group in (WIND_ERROR_FIELDS, ZI_ERROR_FIELDS):
            given = [name for name in group if getattr(self, name) is not None]
            if given and len(given) != len(group):
                missing = [name for name in group if name not in given]
                raise ValueError(f"transport error needs all of {group}; missing {missing}")
        if self.ziscale is not None:
            if len(self.ziscale) > 150:
                raise ValueError("ziscale holds at most 150 hourly factors (HYSPLIT's limit)")
            if any(v <= 0 for v in self.ziscale):
                raise ValueError("ziscale factors must be positive")
        return self

    def _check_realizations(self) -> None:
        n = self.realizations
        if n == 1:
            return
        if self.seed is None:
            raise ValueError(
                f"realizations: {n} needs a seed (realization k runs with seed + k; "
                "without one HYSPLIT seeds from the clock and no realization is reproducible)"
            )
        # HYSPLIT is given SEED=-(|seed + k| + 1): seeds either side of 0 meet.
        streams = [abs(self.seed + k) for k in range(n)]
        if len(set(streams)) < n:
            first = next(k for k in range(n) if streams.index(streams[k]) != k)
            twin = streams.index(streams[first])
            raise ValueError(
                f"realizations: {n} from seed {self.seed} repeat one another: realization "
                f"{first} (seed {self.seed + first}) gets HYSPLIT's SEED "
                f"{-(streams[first] + 1)}, as realization {twin} does; use a seed >= 0 or "
                f"<= {-(n - 1)}"
            )

    def realization(self, k: int) -> HysplitConfig:
        """The settings realization ``k`` runs with: ``seed + k``, a single run."""
        if not 0 <= k < self.realizations:
            raise ValueError(f"realization {k} is not one of 0..{self.realizations - 1}")
        seed = None if self.seed is None else self.seed + k
        return self.model_copy(update={"seed": seed, "realizations": 1})

    @property
    def winderrtf(self) -> int:
        """HYSPLIT's transport-error switch: 1 wind, 2 mixed layer, 3 both, 0 none."""
        wind = self.siguverr is not None
        zi = self.sigzierr is not None
        return int(wind) + 2 * int(zi)


class FootprintConfig(_Section):
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


#: Letters, digits, ``_`` and ``-``: a variant's name is a folder of the store.
_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class VariantConfig(_Section):
    """A named transport variant: the project's settings with some changed.

    Its results live under ``variants/<name>/`` in the store, with their own
    settings fingerprint and completion keys; see :doc:`/execution`.

    Parameters
    ----------
    hysplit : dict
        ``hysplit`` keys that differ from the project's (``numpar``, ``ziscale``,
        ``realizations``…), validated as :class:`HysplitConfig` merged with it.
    footprints : dict of FootprintConfig or None
        The variant's named footprints; ``None`` (default): the project's. A
        variant whose transport settings equal the plain run's (or an earlier
        variant's) uses those particles, as named footprints do.
    """

    hysplit: dict[str, Any] = Field(default_factory=dict)
    footprints: dict[str, FootprintConfig] | None = None


class AdaptConfig(_Section):
    """Bounds for adaptive scaling of the Dask cluster."""

    minimum: int = Field(0, ge=0)
    maximum: int = Field(gt=0)


class CropConfig(_Section):
    """Cut the met each batch of simulations reads once, as a task they depend on.

    Parameters
    ----------
    reach_km : float
        How far particles travel from their release during a run (km): the crop
        is the batch's release points widened by it each way (docs/meteorology.md,
        *Choosing the reach*). A run whose particles reach a cut edge fails, naming it.
    destination : str or None
        Folder or URL every worker reads, the crops go under; ``None``: ``met-crops``
        in the project store.
    storage_options : dict
        fsspec options of ``destination``; default: the project's when it is
        ``None``, else none.
    batch_hours : int
        Receptors of one met and one UTC window of this many hours form a batch.
    batch_size : int
        Most simulations in a batch (split in time order), so a crop stays regional.
    """

    reach_km: float = Field(gt=0)
    destination: str | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    batch_hours: int = Field(24, gt=0)
    batch_size: int = Field(2000, gt=0)


class ExecutionConfig(_Section):
    """How simulations are executed (a Dask cluster).

    Parameters
    ----------
    backend : {"local", "slurm", "kubernetes"}
        ``LocalCluster``, ``dask_jobqueue.SLURMCluster`` or ``dask_kubernetes`` ``KubeCluster``.
    n_workers : int or None
        Workers (one HYSPLIT at a time each); ``None``: one per core locally.
    adapt : AdaptConfig or None
        Scale adaptively between these bounds instead of a fixed ``n_workers``.
    cluster : dict
        Keyword arguments passed unchanged to the cluster class.
    retries : int
        Times a failed simulation task is retried by the scheduler.
    crop : CropConfig or None
        Cut each batch's met once, in a task its simulations depend on, and run
        HYSPLIT on the cut (see :doc:`/execution`); ``None``: read the met as it is.
    """

    backend: Literal["local", "slurm", "kubernetes"] = "local"
    n_workers: int | None = Field(None, gt=0)
    adapt: AdaptConfig | None = None
    cluster: dict[str, Any] = Field(default_factory=dict)
    retries: int = Field(2, ge=0)
    crop: CropConfig | None = None


class ModelConfig(_Section):
    """The whole configuration of a STILT project (``config.yaml``).

    Parameters
    ----------
    receptors : str or None
        Path or URL of the receptor table (CSV or Parquet), relative to the config
        file; ``None`` means ``receptors.csv`` beside it.
    mets : dict of MetConfig or NestConfig
        Named meteorology archives, and nests of them; simulations use the first
        unless told otherwise.
    hysplit : HysplitConfig
        Transport settings.
    footprints : dict of FootprintConfig
        Named footprint grids (may be empty: particles only).
    execution : ExecutionConfig
        Default execution settings.
    profiles : dict of ExecutionConfig
        Named alternative execution settings, chosen with ``--profile``.
    variants : dict of VariantConfig
        Named transport variants run beside the plain settings (see :class:`VariantConfig`).
    output : str
        Project store (path or fsspec URL), relative to the config file.
    storage_options : dict
        fsspec options for a remote ``output`` (e.g. ``endpoint_url``, ``profile``);
        credentials are better left to fsspec's usual environment and config files.

    Examples
    --------
    >>> cfg = ModelConfig.from_yaml("config.yaml")  # doctest: +SKIP
    >>> cfg.hysplit.numpar  # doctest: +SKIP
    1000
    """

    receptors: str | None = None
    mets: dict[str, MetEntry]
    hysplit: HysplitConfig = Field(default_factory=HysplitConfig)
    footprints: dict[str, FootprintConfig] = Field(default_factory=dict)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    profiles: dict[str, ExecutionConfig] = Field(default_factory=dict)
    variants: dict[str, VariantConfig] = Field(default_factory=dict)
    output: str = "output"
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("mets")
    @classmethod
    def _some_met(
        cls, value: dict[str, MetConfig | NestConfig]
    ) -> dict[str, MetConfig | NestConfig]:
        if not value:
            raise ValueError("mets needs at least one meteorology archive")
        for name, entry in value.items():
            if not isinstance(entry, NestConfig):
                continue
            for member in entry.nest:
                if not isinstance(value.get(member), MetConfig):
                    what = "a nest" if member in value else "not in mets"
                    raise ValueError(
                        f"nest {name!r} lists {member!r}, which is {what}: a nest lists archives"
                    )
            if len(set(entry.nest)) < len(entry.nest):
                raise ValueError(f"nest {name!r} lists an archive twice")
        return value

    @field_validator("variants")
    @classmethod
    def _valid_variants(
        cls, value: dict[str, VariantConfig], info: ValidationInfo
    ) -> dict[str, VariantConfig]:
        base = info.data.get("hysplit")
        for name, variant in value.items():
            if not _VARIANT_NAME.match(name):
                raise ValueError(f"variant name {name!r} must be letters, digits, '_' or '-'")
            if base is None:
                continue  # hysplit itself is invalid, and named
            hysplit = _variant_hysplit(base, variant, name)
            _check_footprints(variant_footprints(info.data, variant), hysplit, f"{name}: footprint")
        return value

    def variant(self, name: str | None) -> ModelConfig:
        """The settings variant ``name`` runs with (``None``: the plain ones), without variants.

        Raises
        ------
        ConfigError
            When there is no such variant.
        """
        if name is None:
            return self.model_copy(update={"variants": {}})
        if name not in self.variants:
            known = ", ".join(self.variants) or "none configured"
            raise ConfigError(f"no variant {name!r} ({known})")
        variant = self.variants[name]
        try:
            hysplit = _variant_hysplit(self.hysplit, variant, name)
        except ValueError as exc:
            raise ConfigError(f"variants.{name}: {exc}") from None
        footprints = variant_footprints({"footprints": self.footprints}, variant)
        return self.model_copy(
            update={"hysplit": hysplit, "footprints": footprints, "variants": {}}
        )

    def archives(self, met: str) -> list[tuple[str, MetConfig]]:
        """The archives met ``met`` reads, as ``(name, MetConfig)``, finest grid first.

        Raises
        ------
        ConfigError
            When ``mets`` has no entry ``met``.
        """
        entry = self.mets.get(met)
        if entry is None:
            raise ConfigError(f"unknown met {met!r} (config has {', '.join(self.mets)})")
        if isinstance(entry, NestConfig):
            return [(name, self.mets[name]) for name in entry.nest]
        return [(met, entry)]

    @model_validator(mode="after")
    def _footprints_fit(self) -> ModelConfig:
        _check_footprints(self.footprints, self.hysplit, "footprint")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> ModelConfig:
        """Read and validate a config file, resolving relative paths against its folder.

        Raises
        ------
        ConfigError
            With one line per invalid field, naming it.
        """
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        data = load_yaml(text, str(path)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings")
        return cls.from_dict(data, base=path.parent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: str | Path | None = None) -> ModelConfig:
        """Validate a mapping; relative paths resolve against ``base`` when given."""
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None
        return config.resolve_paths(base) if base is not None else config

    def resolve_paths(self, base: str | Path) -> ModelConfig:
        """Return a copy whose relative paths are anchored at ``base``."""
        base = Path(base).resolve()
        mets = {
            name: met.model_copy(update={"directory": _anchor(met.directory, base)})
            if isinstance(met, MetConfig)
            else met
            for name, met in self.mets.items()
        }
        footprints = {name: _anchor_footprint(fp, base) for name, fp in self.footprints.items()}
        variants = {
            name: variant.model_copy(
                update={
                    "footprints": {
                        fp_name: _anchor_footprint(fp, base)
                        for fp_name, fp in variant.footprints.items()
                    }
                }
            )
            if variant.footprints
            else variant
            for name, variant in self.variants.items()
        }
        return self.model_copy(
            update={
                "footprints": footprints,
                "variants": variants,
                "receptors": _anchor(self.receptors, base)
                if self.receptors
                else _default_receptors(base),
                "output": _anchor(self.output, base),
                "mets": mets,
            }
        )

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML (and write it to ``path`` when given); round-trips exactly."""
        text = yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    def result_changes(self, other: ModelConfig) -> list[str]:
        """The result-changing settings in which ``other`` differs, as ``"field: a → b"``.

        Run-control settings (:data:`RUN_CONTROL`, execution, profiles, storage
        options, paths) may differ; a footprint's settings (grid and transforms)
        are checked per footprint name by the store (see :mod:`pystilt_dask.fingerprint`).
        """
        changes = transport_changes(self.hysplit, other.hysplit)
        for name in set(self.variants) & set(other.variants):
            before, after = self.variant(name).hysplit, other.variant(name).hysplit
            changes += [f"variants.{name}.{c}" for c in transport_changes(before, after)]
        return changes

    def execution_for(self, profile: str | None) -> ExecutionConfig:
        """Return the execution settings of a named profile (``None``: the default)."""
        if profile is None:
            return self.execution
        if profile not in self.profiles:
            known = ", ".join(self.profiles) or "none defined"
            raise ConfigError(f"unknown execution profile {profile!r} (profiles: {known})")
        return self.profiles[profile]


def variant_footprints(data: dict[str, Any], variant: VariantConfig) -> dict[str, FootprintConfig]:
    """A variant's footprints: its own, else the project's (``data["footprints"]``)."""
    if variant.footprints is not None:
        return variant.footprints
    return data.get("footprints") or {}


def _variant_hysplit(base: HysplitConfig, variant: VariantConfig, name: str) -> HysplitConfig:
    """The project's HYSPLIT settings with a variant's changes, validated as one.

    Raises
    ------
    ValueError
        Naming the variant and the setting at fault.
    """
    merged = {**base.model_dump(exclude_unset=True), **variant.hysplit}
    try:
        return HysplitConfig.model_validate(merged)
    except ValidationError as exc:
        message = _describe(exc)
        where = message.removeprefix("config: ")
        where = f"hysplit: {where}" if where != message else f"hysplit.{message}"
        raise ValueError(f"variant {name!r}: {where}") from None


def _check_footprints(
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


#: Most values a YAML document may hold once its aliases are expanded.
MAX_YAML_VALUES = 100_000


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document safely, refusing one whose aliases expand past reason.

    An alias repeats a node without copying it, so a few lines of nested aliases
    (a "billion laughs" document) stand for more values than memory holds once
    anything walks them. The expanded size is counted on the parsed graph, each
    node once, before any Python object is built.

    Raises
    ------
    ConfigError
        For invalid YAML, or more than :data:`MAX_YAML_VALUES` values expanded.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node, {})
        if expanded > MAX_YAML_VALUES:
            raise ConfigError(
                f"{source}: its YAML aliases expand to more than {MAX_YAML_VALUES} values; "
                "write the settings out instead"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source} is not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    # Iterative, with each node's size kept once: a shared node counts every time it
    # is used (as it would be expanded) but is visited once.
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, children_done = stack.pop()
        if id(current) in seen:
            continue
        children = _children(current)
        if children_done or not children:
            seen[id(current)] = 1 + sum(seen[id(c)] for c in children)
            continue
        stack.append((current, True))
        stack.extend((c, False) for c in children if id(c) not in seen)
    return seen[id(node)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _default_receptors(base: Path) -> str | None:
    # receptors.csv beside the config when there is one; a project registered from
    # another table has none, and runs what its store holds.
    default = base / "receptors.csv"
    return str(default) if default.is_file() else None


def _anchor_footprint(footprint: FootprintConfig, base: Path) -> FootprintConfig:
    transforms = tuple(_anchor_table(t, base) for t in footprint.transforms)
    return footprint.model_copy(update={"transforms": transforms})


def _anchor_table(transform: Transform, base: Path) -> Transform:
    if isinstance(transform, AveragingKernel) and transform.table is not None:
        return transform.model_copy(update={"table": _anchor(transform.table, base)})
    return transform


def _anchor(path: str, base: Path) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str(base / path)


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        if loc[:1] == ("mets",) and len(loc) > 2 and loc[2] in _MET_KINDS:
            loc = loc[:2] + loc[3:]  # the kind of a mets entry is no field of it
        where = ".".join(str(p) for p in loc) or "config"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)
