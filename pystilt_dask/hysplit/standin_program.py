"""The stand-in transport's program: what the executable :mod:`.standin` writes runs.

Run in a work directory holding CONTROL and SETUP.CFG (as :mod:`.inputs` writes
them), it writes ``PARTICLE_STILT.DAT`` with the ``VARSIWANT`` columns for
``NUMPAR`` particles at every output step (``OUTDT`` minutes, else ``DELT``) up to
the run length of CONTROL, prints ``Complete Hysplit`` as ``hycs_std`` does, and
writes a MESSAGE saying it is a stand-in. Particles leave their release points
(R-STILT's layout: consecutive blocks of ``indx`` per point, a column's particles
spread over its height) and drift with a wind and a random walk drawn from a
seed of CONTROL and SETUP.CFG together, so a run is byte-identical each time and
differs between receptors and seeds. Particles in the lower part of the mixed
layer (below ``VEGHT``) get a positive ``foot``, so footprints on a grid around
the receptor are not empty. Nothing here is a transport model: the wind, mixed
layer and terrain are drawn, not read from the met files.

It imports the standard library only, and not ``re`` or ``pathlib`` (a fifth of
its start-up): a run of 50 particles × 2 h takes a few tens of milliseconds,
most of it the interpreter's start.
"""

from __future__ import annotations

import math
import operator
import random
import sys

PARTICLE_FILE = "PARTICLE_STILT.DAT"

_EARTH_M_PER_DEG = 111_195.0
_AIR_KG_PER_MOL = 0.02897

# Every code R-STILT accepts, in the order simulate() computes a row's values,
# with how HYSPLIT writes it (time and indx as floats: "-1.").
_FORMATS = {
    "time": "%.0f.", "indx": "%d.", "long": "%.4f", "lati": "%.4f", "zagl": "%.4f",
    "sigw": "%.3f", "tlgr": "%.4f", "zsfc": "%.4f", "icdx": "%d.", "temp": "%.2f",
    "samt": "%.4f", "foot": "%.7f", "shtf": "%.2f", "tcld": "%.7f", "dmas": "%.3f",
    "dens": "%.5f", "rhfr": "%.5f", "sphu": "%.10f", "lcld": "%.7f", "zloc": "%.2f",
    "dswf": "%.2f", "wout": "%.6f", "mlht": "%.2f", "rain": "%.3f", "crai": "%.3f",
    "pres": "%.2f", "whtf": "%.2f", "temz": "%.2f", "zcfx": "%.2f",
}  # fmt: skip
_CODES = tuple(_FORMATS)


def _namelist(text: str) -> dict[str, str]:
    """SETUP.CFG's ``KEY=value,`` lines as upper-case keys and raw values."""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip().upper()] = value.strip().rstrip(",")
    return values


def _release(control: list[str]) -> tuple[list[tuple[float, float, float]], int]:
    """Release points (lat, lon, m AGL) and the run length in hours from CONTROL."""
    n_points = int(control[1])
    points = [tuple(float(v) for v in control[2 + i].split()[:3]) for i in range(n_points)]
    return points, int(control[2 + n_points])


def _origins(points: list, numpar: int) -> list[tuple[float, float, float]]:
    """Each particle's release (lat, lon, height), in ``indx`` order.

    Two points at one place are a column (a line source, particles spread over
    its height); otherwise each point releases a consecutive block of ``indx``.
    """
    if len(points) == 2 and points[0][:2] == points[1][:2]:
        (lat, lon, bottom), (_, _, top) = points
        return [(lat, lon, bottom + (k + 0.5) * (top - bottom) / numpar) for k in range(numpar)]
    return [points[min(k * len(points) // numpar, len(points) - 1)] for k in range(numpar)]


def simulate(control_text: str, setup_text: str) -> tuple[str, int]:
    """Return the text of PARTICLE_STILT.DAT for these inputs, and its number of rows.

    Parameters
    ----------
    control_text, setup_text : str
        The CONTROL and SETUP.CFG of a run; together they seed the particles.
    """
    control = control_text.splitlines()
    setup = _namelist(setup_text)
    points, n_hours = _release(control)
    numpar = int(setup["NUMPAR"])
    codes = [v.strip(" '") for v in setup["VARSIWANT"].split(",")]
    unknown = [c for c in codes if c not in _FORMATS]
    if unknown:
        raise ValueError(f"VARSIWANT codes the stand-in does not know: {', '.join(unknown)}")
    pick = operator.itemgetter(*(_CODES.index(c) for c in codes))
    line = " ".join(_FORMATS[c] for c in codes) + "\n"
    step = max(1, round(float(setup.get("OUTDT", "0")) or float(setup.get("DELT", "1")) or 1))
    veght = float(setup.get("VEGHT", "0.5"))
    rng = random.Random(control_text + setup_text)
    gauss = rng.gauss
    # One wind, mixed layer (m) and terrain height (g) per run; a random walk per particle.
    speed, direction = rng.uniform(2.0, 5.0), rng.uniform(0.0, 2 * math.pi)
    u, v = speed * math.cos(direction), speed * math.sin(direction)
    m, g = rng.uniform(300.0, 1500.0), rng.uniform(0.0, 1500.0)
    h = veght if veght > 1 else veght * m  # the footprint height (HYSPLIT reads > 1 as metres)
    state = [[lon, lat, z] for lat, lon, z in _origins(points, numpar)]
    lat0, lon0, z0 = points[-1]
    out = [f"{lat0:13.7f} {lon0:16.6f} {z0:16.8f}    \n"]
    total, sign = 60 * abs(n_hours), (-1 if n_hours < 0 else 1)
    ends = [*range(step, total, step), total]  # the last step reaches the run length
    for previous, end in zip([0, *ends[:-1]], ends, strict=True):
        dt = 60.0 * (end - previous)  # seconds
        spread, mixing = 100.0 * math.sqrt(dt / 60.0), 0.2 * m * math.sqrt(dt / 60.0)
        for k, particle in enumerate(state, start=1):
            x, y, z = particle
            x += (sign * u * dt + spread * gauss(0.0, 1.0)) / (
                _EARTH_M_PER_DEG * math.cos(math.radians(y))
            )
            y += (sign * v * dt + spread * gauss(0.0, 1.0)) / _EARTH_M_PER_DEG
            if z < m:  # well mixed below the mixed-layer top, reflected at both ends
                z = abs(z + mixing * gauss(0.0, 1.0))
                z = 2 * m - z if z > m else z
            else:
                z = abs(z + 20.0 * gauss(0.0, 1.0))
            particle[:] = x, y, z
            s = (end - previous) if z < h else 0.0  # minutes below h this step
            asl = g + z
            temp, pres = 288.15 - 0.0065 * asl, 1013.25 * math.exp(-asl / 8400.0)
            dens = pres * 100.0 / (287.05 * temp)
            inside = z < m
            values = (
                sign * end, k, x, y, z, 0.6 if inside else 0.1, 5.0 if inside else 100.0, g,
                2, temp, s, s * 60 * _AIR_KG_PER_MOL / (h * dens), -30.0, 0.0, 1.0, dens, 0.5,
                0.005, -99.0, -999.0, 0.0, 0.1 * gauss(0.0, 1.0), m, 0.0, 0.0, pres,
                15.0, temp, 0.0,
            )  # fmt: skip
            out.append(line % pick(values))
    return "".join(out), len(out) - 1


def main() -> int:
    """Run as ``hycs_std`` would in the current directory; return the exit status."""
    try:
        with open("CONTROL") as control, open("SETUP.CFG") as setup:
            text, rows = simulate(control.read(), setup.read())
    except KeyError as exc:
        print(f" stand-in transport: SETUP.CFG has no {exc.args[0]}", file=sys.stderr)
        return 1
    except (OSError, ValueError, IndexError) as exc:
        print(f" stand-in transport: cannot run: {exc}", file=sys.stderr)
        return 1
    with open(PARTICLE_FILE, "w") as particles:
        particles.write(text)
    with open("MESSAGE", "w") as message:
        message.write(
            f" NOTICE stand-in transport (pystilt_dask test double, not HYSPLIT): {rows} rows\n"
        )
    print(" Calculation Started ... please be patient (stand-in transport, not HYSPLIT)")
    print(" Complete Hysplit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
