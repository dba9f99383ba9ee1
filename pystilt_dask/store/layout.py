"""The keys of a project store: every name a project writes is defined here.

::

    <project>/
      config.yaml                          the project's ModelConfig
      .stilt/registry/<version>.parquet    registry commits: simulations and their rows
      .stilt/registry/<version>.checkpoint.parquet  the whole registry as of <version>
      .stilt/registry-copy/<version>.parquet  second copy of each commit, for repair
      .stilt/claims/<sim_id>@<gen>.json    who is running a simulation, until when
      .stilt/clock                         rewritten to read the store's clock (claims)
      .stilt/checksums/<sim_id>.json       digests of a simulation's completion keys
      particles/<sim_id>.parquet           particles, zstd Parquet           (completion key)
      error_particles/<sim_id>.parquet     transport-error run, when configured (completion key)
      footprints/<name>.zarr/              zarr v3 group per named footprint
          foot/c.<row>.0.0.0               one chunk per simulation          (completion key)
      footprints/<name>.empty/<sim_id>.empty  marker: that footprint is empty
      logs/<sim_id>.log                    HYSPLIT log of the last attempt
      failures/<sim_id>.json               failure record of the last failed attempt
      .stilt/compact.lock                  held while ``stilt-dask compact`` runs

Packed by ``stilt-dask compact`` (:mod:`pystilt_dask.store.packing`), per block of
:data:`BLOCK_ROWS` rows::

      footprints/<name>.zarr/foot/c/<block>/0/0/0   a zarr shard of the block's chunks
      footprints/<name>.empty/block-<block>.json    the block's empty markers
      particles/block-<block>.parquet               the block's particles
      error_particles/block-<block>.parquet         the block's transport-error particles
      logs/block-<block>.parquet                    the logs kept in the block's particles

A simulation is complete iff its completion keys exist; nothing else records it
(see :mod:`pystilt_dask.store.completion`).
"""

from __future__ import annotations

import re

CONFIG = "config.yaml"
REGISTRY = ".stilt/registry"
REGISTRY_COPIES = ".stilt/registry-copy"
CLAIMS = ".stilt/claims"
CLOCK = ".stilt/clock"
CHECKSUMS = ".stilt/checksums"
PARTICLES = "particles"
ERROR_PARTICLES = "error_particles"
FOOTPRINTS = "footprints"
LOGS = "logs"
FAILURES = "failures"
COMPACT_LOCK = ".stilt/compact.lock"

#: Rows per packed block: a footprint shard and a particle block file hold this many.
BLOCK_ROWS = 1024
#: Name prefix of packed block files (no simulation id starts with it).
BLOCK_PREFIX = "block-"

#: File suffixes, used to read simulation ids back from listings.
PARQUET_SUFFIX = ".parquet"
CHECKPOINT_SUFFIX = ".checkpoint.parquet"
EMPTY_SUFFIX = ".empty"
JSON_SUFFIX = FAILURE_SUFFIX = ".json"
#: Between a simulation id and a claim generation (never part of a simulation id).
CLAIM_SEPARATOR = "@"

#: The footprint array inside each footprint group.
FOOT = "foot"

#: A footprint chunk key: ``c.<row>.0.0.0`` (rejects ``*.partial`` temporaries).
CHUNK_RE = re.compile(r"^c\.(\d+)\.0\.0\.0$")
#: A packed block file name: ``block-<block>.parquet`` or ``.json``.
BLOCK_RE = re.compile(r"^block-(\d+)\.(?:parquet|json)$")


def particles_key(sim_id: str) -> str:
    """Key of a simulation's particles."""
    return f"{PARTICLES}/{sim_id}{PARQUET_SUFFIX}"


def error_particles_key(sim_id: str) -> str:
    """Key of a simulation's transport-error particles."""
    return f"{ERROR_PARTICLES}/{sim_id}{PARQUET_SUFFIX}"


def footprint_group(name: str) -> str:
    """Key of the zarr group of a named footprint."""
    return f"{FOOTPRINTS}/{name}.zarr"


def foot_array(name: str) -> str:
    """Key of the footprint array of a named footprint."""
    return f"{footprint_group(name)}/{FOOT}"


def chunk_key(name: str, row: int) -> str:
    """Key of the footprint chunk of the simulation in ``row``."""
    return f"{foot_array(name)}/c.{row}.0.0.0"


def empty_folder(name: str) -> str:
    """Folder holding the empty-footprint markers of a named footprint."""
    return f"{FOOTPRINTS}/{name}.empty"


def empty_key(name: str, sim_id: str) -> str:
    """Key of the marker saying a simulation's footprint ``name`` is empty."""
    return f"{empty_folder(name)}/{sim_id}{EMPTY_SUFFIX}"


def log_key(sim_id: str) -> str:
    """Key of a simulation's HYSPLIT log."""
    return f"{LOGS}/{sim_id}.log"


def failure_key(sim_id: str) -> str:
    """Key of a simulation's failure record."""
    return f"{FAILURES}/{sim_id}{FAILURE_SUFFIX}"


def registry_key(version: int) -> str:
    """Key of one registry commit (zero-padded, so names sort by version)."""
    return f"{REGISTRY}/{version:09d}{PARQUET_SUFFIX}"


def checkpoint_key(version: int) -> str:
    """Key of the registry checkpoint holding every entry of versions <= ``version``."""
    return f"{REGISTRY}/{version:09d}{CHECKPOINT_SUFFIX}"


def registry_copy_key(version: int) -> str:
    """Key of the second copy of one registry commit."""
    return f"{REGISTRY_COPIES}/{version:09d}{PARQUET_SUFFIX}"


def claim_key(sim_id: str, generation: int) -> str:
    """Key of generation ``generation`` of a simulation's claim."""
    return f"{CLAIMS}/{sim_id}{CLAIM_SEPARATOR}{generation}{JSON_SUFFIX}"


def checksums_key(sim_id: str) -> str:
    """Key of the digests recorded when a simulation's results were published."""
    return f"{CHECKSUMS}/{sim_id}{JSON_SUFFIX}"


def block_of(row: int) -> int:
    """The packed block holding ``row``."""
    return row // BLOCK_ROWS


def shard_folder(name: str) -> str:
    """Folder of footprint ``name``'s shards, ``foot/c``: one subfolder per block."""
    return f"{foot_array(name)}/c"


def shard_key(name: str, block: int) -> str:
    """Key of the shard of footprint ``name`` holding the chunks of ``block``'s rows."""
    return f"{shard_folder(name)}/{block}/0/0/0"


def block_key(folder: str, block: int) -> str:
    """Key of ``block``'s packed Parquet file in ``folder`` (particles, error particles, logs)."""
    return f"{folder}/{BLOCK_PREFIX}{block}{PARQUET_SUFFIX}"


def empty_block_key(name: str, block: int) -> str:
    """Key of the empty markers of footprint ``name`` packed for ``block``."""
    return f"{empty_folder(name)}/{BLOCK_PREFIX}{block}{JSON_SUFFIX}"


def blocks_in(names: list[str]) -> list[int]:
    """The blocks of the packed block files among ``names``."""
    return sorted(int(m.group(1)) for n in names if (m := BLOCK_RE.match(n)))


def strip_suffix(names: list[str], suffix: str) -> list[str]:
    """Simulation ids from file names ending in ``suffix`` (others, e.g. temporaries, dropped)."""
    return [n[: -len(suffix)] for n in names if n.endswith(suffix) and not BLOCK_RE.match(n)]
