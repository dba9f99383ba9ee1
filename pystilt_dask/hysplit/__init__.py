"""The HYSPLIT-STILT driver: binary resolution, input files, runs, particle parsing."""

from .executable import HysplitInstall, resolve_hysplit
from .inputs import control_text, setup_text, write_inputs
from .particles import read_particle_file
from .run import run_hysplit

__all__ = [
    "HysplitInstall",
    "control_text",
    "read_particle_file",
    "resolve_hysplit",
    "run_hysplit",
    "setup_text",
    "write_inputs",
]
