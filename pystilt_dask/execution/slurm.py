"""Slurm the dask-jobqueue way: time limits, worker-job settings and the coordinator job.

``SLURMCluster`` reads every setting a caller leaves out from ``dask.config``
(``jobqueue.slurm.*``, which a site's ``jobqueue.yaml`` sets), so pystilt_dask
passes only what the user wrote in ``execution.cluster`` plus the worker
arguments it needs: the ``hysplit`` slot, the warm-up preload and a lifetime
that retires workers before Slurm kills their job.
"""

from __future__ import annotations

import datetime
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dask.config

from ..errors import ConfigError
from .workers import SLOT_ARGS

#: Slurm's spellings of "no time limit" (``time_str2secs`` compares them ignoring case).
UNLIMITED = ("UNLIMITED", "INFINITE", "-1")

# Slurm's --time grammar, field by field; [0-9] rather than \d, which also
# matches digits of other scripts that Slurm's sscanf would not read.
_N = "([0-9]+)"
_TIME_FORMS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), fields)
    for pattern, fields in (
        (rf"{_N}", ("minutes",)),
        (rf"{_N}:{_N}", ("minutes", "seconds")),
        (rf"{_N}:{_N}:{_N}", ("hours", "minutes", "seconds")),
        (rf"{_N}-{_N}", ("days", "hours")),
        (rf"{_N}-{_N}:{_N}", ("days", "hours", "minutes")),
        (rf"{_N}-{_N}:{_N}:{_N}", ("days", "hours", "minutes", "seconds")),
    )
)
_TIME_HELP = (
    "minutes, minutes:seconds, hours:minutes:seconds, days-hours, "
    "days-hours:minutes, days-hours:minutes:seconds or UNLIMITED"
)

# Words an #SBATCH line carries without quotes: Slurm's directive parser gives
# no other character a meaning (quotes, backslash, '#' and whitespace do).
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def parse_walltime(text: Any, field: str = "walltime") -> datetime.timedelta | None:
    """Read a Slurm time limit (``sbatch --time``) as Slurm reads it.

    Parameters
    ----------
    text : str
        ``"minutes"``, ``"minutes:seconds"``, ``"hours:minutes:seconds"``,
        ``"days-hours"``, ``"days-hours:minutes"`` or
        ``"days-hours:minutes:seconds"``; fields may exceed their usual range
        (``"90"`` is 90 minutes). ``"UNLIMITED"``, ``"INFINITE"`` (any case),
        ``"-1"`` and a limit of zero mean no time limit.
    field : str
        The setting's name, for the error message.

    Returns
    -------
    datetime.timedelta or None
        The limit as written, or ``None`` for no limit. Slurm rounds seconds up
        to whole minutes, so the job may run up to 59 s longer than this, never
        shorter.

    Raises
    ------
    ConfigError
        For anything else, including numbers: YAML reads an unquoted ``30:00``
        as the integer 1800, which Slurm would take for 1800 minutes.

    Examples
    --------
    >>> parse_walltime("30")
    datetime.timedelta(seconds=1800)
    >>> parse_walltime("2-12")
    datetime.timedelta(days=2, seconds=43200)
    >>> parse_walltime("UNLIMITED") is None
    True
    """
    if not isinstance(text, str):
        raise ConfigError(
            f"{field} {text!r} is not a string: quote it ('30' is 30 minutes to Slurm; "
            "YAML reads an unquoted 30:00 as the number 1800)"
        )
    value = text.strip()
    if value.upper() in UNLIMITED:
        return None
    for pattern, fields in _TIME_FORMS:
        match = pattern.fullmatch(value)
        if match:
            numbers = map(int, match.groups())
            limit = datetime.timedelta(**dict(zip(fields, numbers, strict=True)))
            # sbatch: "A time limit of zero requests that no time limit be imposed."
            return limit or None
    raise ConfigError(f"{field} {text!r} is not a Slurm time limit: use {_TIME_HELP}")


def lifetime_args(
    walltime: str | None, given: Sequence[str], *, field: str = "walltime"
) -> list[str]:
    """Worker arguments that retire workers gracefully before Slurm kills their job.

    A worker leaves 5% of its walltime (at least a minute) early, staggered so
    that workers started together do not leave at once, and is restarted; its
    running simulation is rescheduled elsewhere.

    Parameters
    ----------
    walltime : str or None
        The job's Slurm time limit (see :func:`parse_walltime`); ``None`` or no
        limit: workers live as long as their job.
    given : sequence of str
        The worker arguments already set; a ``--lifetime`` there wins.
    field : str
        The setting ``walltime`` came from, for the error message.

    Returns
    -------
    list of str
        ``--lifetime``, ``--lifetime-stagger`` and ``--lifetime-restart``, or nothing.

    Raises
    ------
    ConfigError
        When ``walltime`` is not a Slurm time limit.
    """
    if any(arg == "--lifetime" or arg.startswith("--lifetime=") for arg in given):
        return []
    limit = None if walltime is None else parse_walltime(walltime, field)
    if limit is None:
        return []
    seconds = limit.total_seconds()
    margin = max(60.0, 0.05 * seconds)
    lifetime = max(seconds - margin, 60.0)
    stagger = min(margin / 2, 300.0)
    return [
        "--lifetime", f"{int(lifetime)}s", "--lifetime-stagger", f"{int(stagger)}s",
        "--lifetime-restart",
    ]  # fmt: skip


def slurm_cluster_kwargs(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``SLURMCluster``: the user's settings plus the worker slot.

    Everything the user left out (cores, processes, memory, job name, queue,
    walltime, ...) is left out here too, so that ``SLURMCluster`` takes it from
    ``dask.config`` (``jobqueue.slurm.*``, i.e. the site's ``jobqueue.yaml``).
    Only ``worker_extra_args`` is completed: the user's (or, when unset, the
    configured) arguments followed by ``--resources hysplit=1 --preload
    pystilt_dask.execution.preload`` and the :func:`lifetime_args` of the time
    limit the job will get.

    Each worker process gets one ``hysplit`` slot, so a job runs one HYSPLIT per
    worker process: with more cores than processes per job, the extra threads
    only run the Python around HYSPLIT.

    Parameters
    ----------
    cluster : mapping
        ``execution.cluster``: keyword arguments of ``SLURMCluster``.

    Returns
    -------
    dict
        A new dict; ``cluster`` is not changed.

    Raises
    ------
    ConfigError
        When dask-jobqueue is missing, when neither the user nor ``dask.config``
        gives cores or memory per job, or when the time limit is not a Slurm one.
    """
    _load_jobqueue_config()
    kwargs = dict(cluster)
    section = f"jobqueue.{kwargs.get('config_name') or 'slurm'}"

    def configured(key: str) -> Any:
        return dask.config.get(f"{section}.{key}", None)

    missing = [key for key in ("cores", "memory") if kwargs.get(key) is None]
    missing = [key for key in missing if configured(key) is None]
    if missing:
        # SLURMCluster's own error is several lines and names neither file.
        raise ConfigError(
            f"backend 'slurm' needs the {' and '.join(missing)} of each worker job: set "
            + " and ".join(f"execution.cluster.{key}" for key in missing)
            + ", or "
            + " and ".join(f"{section}.{key}" for key in missing)
            + " in the site's jobqueue.yaml"
        )
    extra = _jobqueue_list(kwargs, configured, "worker_extra_args", "extra")
    walltime, field = _job_walltime(kwargs, configured, section)
    kwargs["worker_extra_args"] = [*extra, *SLOT_ARGS, *lifetime_args(walltime, extra, field=field)]
    return kwargs


def check_job_script(script: str) -> None:
    """Ask Slurm whether it would accept a worker job, without submitting it.

    A job ``sbatch`` refuses (unknown partition or account, too many cores or too
    much memory for any node) would otherwise fail in the cluster's background
    loop, and a run would wait forever for workers that never come.

    Raises
    ------
    ConfigError
        When ``sbatch`` is missing or refuses the job, with Slurm's reason.
    """
    try:
        result = subprocess.run(
            ["sbatch", "--test-only"], input=script, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise ConfigError(
            "backend 'slurm' needs Slurm's sbatch on this machine's PATH (run where jobs are "
            "submitted, e.g. a login node)"
        ) from None
    if result.returncode:
        reason = " ".join(result.stderr.split()) or f"exit status {result.returncode}"
        raise ConfigError(f"sbatch refuses the worker job: {reason}")


def coordinator_script(
    config_path: str | os.PathLike[str],
    profile: str | None,
    walltime: str,
    options: Sequence[str],
    python: str = sys.executable,
) -> str:
    """The batch script of a coordinator job running ``stilt-dask run`` on a config.

    The coordinator needs one core and little memory; an explicit ``--mem`` in
    ``options`` keeps Slurm from giving it the whole node, which would starve
    its own worker jobs. Its output goes to ``stilt-coordinator-<job id>.out``
    beside the config.

    Parameters
    ----------
    config_path : str or os.PathLike
        The project's config.yaml; made absolute.
    profile : str or None
        Execution profile for the run.
    walltime : str
        Slurm time limit of the coordinator job (see :func:`parse_walltime`).
    options : sequence of str
        Further sbatch options, one argument each (e.g. ``"--account=x"``).
    python : str
        The Python that runs pystilt_dask in the job.

    Returns
    -------
    str
        The script. Its command line is quoted for the shell; its ``#SBATCH``
        lines are quoted for sbatch, which splits them by its own rules
        (quotes and backslash escapes, an unquoted ``#`` starts a comment).

    Raises
    ------
    ConfigError
        When ``walltime`` is not a Slurm time limit, or a path or option holds
        what no ``#SBATCH`` line can carry (a line break, a backslash in the
        config's folder, or the words ``hetjob``/``packjob``).
    """
    parse_walltime(walltime, "--walltime")
    config = os.path.abspath(os.fspath(config_path))
    folder = os.path.dirname(config)
    if "\\" in folder:
        # In a Slurm output file name "\\" turns off %j expansion.
        raise ConfigError(f"{folder!r}: Slurm cannot write job output to a folder with a '\\'")
    # %j is Slurm's job id; a '%' of the folder's own name is written %%.
    output = os.path.join(folder.replace("%", "%%"), "stilt-coordinator-%j.out")
    directives = [
        "--job-name=stilt-coordinator",
        f"--time={walltime.strip()}",
        "--cpus-per-task=1",
        f"--output={output}",
        *options,
    ]
    command = [python, "-m", "pystilt_dask", "run", config]
    if profile:
        command += ["--profile", profile]
    lines = [
        "#!/usr/bin/env bash",
        *(f"#SBATCH {_sbatch_word(directive)}" for directive in directives),
        f"exec {shlex.join(command)}",
    ]
    return "\n".join(lines) + "\n"


def _load_jobqueue_config() -> None:
    # dask-jobqueue registers its jobqueue.* defaults when imported.
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        raise ConfigError(
            "backend 'slurm' needs dask-jobqueue: pip install 'pystilt-dask[slurm]'"
        ) from None


def _jobqueue_list(
    kwargs: Mapping[str, Any], configured: Callable[[str], Any], name: str, old_name: str
) -> list[str]:
    """The list option ``name`` as dask-jobqueue resolves it (incl. its old name)."""
    value = kwargs.get(name)
    if value is None:
        value = configured(name.replace("_", "-"))
    old = kwargs.get(old_name)
    if old is None:
        old = configured(old_name.replace("_", "-"))
    if old is not None and not value:
        value = old  # dask-jobqueue still honours the deprecated name alone
    return [str(item) for item in value or []]


def _job_walltime(
    kwargs: Mapping[str, Any], configured: Callable[[str], Any], section: str
) -> tuple[Any, str]:
    """The time limit a worker job will get, and the setting it comes from."""
    walltime, field = kwargs.get("walltime"), "execution.cluster.walltime"
    if walltime is None:
        walltime, field = configured("walltime"), f"{section}.walltime"
    skip = _jobqueue_list(kwargs, configured, "job_directives_skip", "header_skip")
    if walltime is not None and any(s in f"#SBATCH -t {walltime}" for s in skip):
        walltime = None  # dask-jobqueue drops the line: the partition's default applies
    # Extra directives follow dask-jobqueue's "-t" line, and sbatch keeps the last --time.
    directives = _jobqueue_list(kwargs, configured, "job_extra_directives", "job_extra")
    for directive in directives:
        found = _directive_time(directive)
        if found is not None:
            walltime, field = found, "job_extra_directives"
    return walltime, field


def _directive_time(directive: str) -> str | None:
    """The value of the last ``-t``/``--time`` in one ``#SBATCH`` directive, if any."""
    try:
        words = shlex.split(directive)
    except ValueError:
        words = directive.split()
    found = None
    for word, following in zip(words, [*words[1:], None], strict=True):
        if word in ("-t", "--time") and following is not None:
            found = following
        elif word.startswith("--time="):
            found = word.removeprefix("--time=")
        elif word.startswith("-t") and not word.startswith("--") and len(word) > 2:
            found = word[2:]
    return found


def _sbatch_word(word: str) -> str:
    """Quote ``word`` so that sbatch reads it back from an ``#SBATCH`` line unchanged."""
    if any(char in word for char in "\n\r\0"):
        # The rest of the line would become a shell command of the job.
        raise ConfigError(f"sbatch option {word!r} holds a line break")
    if re.search("hetjob|packjob", word, re.IGNORECASE):
        # sbatch splits the job into heterogeneous components at any such line.
        raise ConfigError(f"sbatch option {word!r} holds 'hetjob'/'packjob', which splits the job")
    if _PLAIN_WORD.fullmatch(word):
        return word
    # Inside double quotes sbatch still honours backslash escapes, and nothing else.
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
