"""Transport settings: HYSPLIT-STILT's CONTROL, SETUP.CFG and error statistics."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from .sections import Section

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

#: Longest run, in hours either way (a year).
MAX_HOURS = 8784
#: Most particles per release (R-STILT runs use hundreds to a few thousand).
MAX_PARTICLES = 10_000_000
#: Most realizations of an ensemble.
MAX_REALIZATIONS = 1000

WIND_ERROR_FIELDS = ("siguverr", "tluverr", "zcoruverr", "horcoruverr")
ZI_ERROR_FIELDS = ("sigzierr", "tlzierr", "horcorzierr")


class HysplitConfig(Section):
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
