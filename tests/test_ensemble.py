"""Realizations of an ensemble: PYSTILT's seeds, one task and one result prefix each.

PYSTILT (the ``pystilt`` wheel, ``import stilt``) runs the reference ensemble on the
package's idealized met; ours runs the same receptor with the settings PYSTILT
recorded (``stilt-dask migrate`` of its ``_settings.yaml``), and realization k's
particles are compared column by column. HYSPLIT runs are counted with a wrapper
executable that appends a line per run and hands over to the real ``hycs_std``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from footprint_helpers import pystilt_accessor

from pystilt_dask.config import ModelConfig
from pystilt_dask.errors import ConfigError
from pystilt_dask.execution.run import task_key
from pystilt_dask.migrate import from_pystilt
from pystilt_dask.model import Model
from pystilt_dask.receptors import PointReceptor

stilt = pytest.importorskip("stilt", reason="PYSTILT (the pystilt wheel) runs the reference")

TIME = "2019-05-30 10:00"
OURS = [PointReceptor(time=TIME, longitude=-111.848, latitude=40.766, altitude=5)]
THEIRS = [stilt.PointReceptor(time=TIME, longitude=-111.848, latitude=40.766, altitude=5)]
GRID = {"xmin": -112.3, "xmax": -111.5, "ymin": 40.4, "ymax": 41.0, "xres": 0.02}
#: PYSTILT's particle columns under R-STILT's names, as ours stores them.
COLUMNS = {"age": "time", "particle": "indx", "lon": "long", "lat": "lati"}
N = 3


@pytest.fixture(scope="module")
def pystilt_ensemble(tmp_path_factory, idealized_met) -> Path:
    """A PYSTILT project of one receptor, one variant of 3 realizations from seed 7."""
    folder = tmp_path_factory.mktemp("pystilt-ensemble") / "project"
    project = stilt.Project.init(
        folder, receptors=THEIRS, mets={"idealized": idealized_met},
        variants={"ens": {"realizations": N}}, n_hours=-2, numpar=50, seed=7, krand=2,
    )  # fmt: skip
    with pystilt_accessor():
        project.run()
    assert list(project.status()["state"]) == ["complete"] * N, project.status()
    return folder / "output" / "particles"


def counting(stand_in) -> Path:
    return stand_in('echo run >> "$RUNS/count"\nexec "$REAL"')


def runs(executable: Path) -> int:
    count = executable.with_suffix(".runs") / "count"
    return len(count.read_text().splitlines()) if count.exists() else 0


def config_for(idealized_met, tmp_path, realizations: int, executable=None, **hysplit):
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "realizations": realizations,
                        "executable": str(executable) if executable else None, **hysplit},
            "footprints": {"default": GRID},
            "output": str(tmp_path / "store"),
        }
    )  # fmt: skip


def test_realization_k_equals_pystilts_realization_k(pystilt_ensemble, idealized_met, client):
    (settings,) = pystilt_ensemble.glob("settings=ens-*/_settings.yaml")
    config = from_pystilt(settings, mets={"idealized": idealized_met})
    assert config.hysplit.realizations == N and config.hysplit.seed == 7
    model = Model(config.output, OURS, config)
    states = model.run(client=client, quiet=True)
    sim_id = OURS[0].sim_id
    assert states == {
        sim_id: "complete",
        **{f"realizations/{k}/{sim_id}": "complete" for k in range(1, N)},
    }
    seen = []
    for k in range(N):
        (path,) = settings.parent.glob(f"realization={k}/date=*/{THEIRS[0].id}.parquet")
        theirs = pd.read_parquet(path)
        mine = model.trajectories.load(sim_id, realization=k)
        assert len(mine) == len(theirs) > 0
        for column in theirs.columns.drop(["receptor", "release_height", "foot"], errors="ignore"):
            np.testing.assert_array_equal(
                mine[COLUMNS.get(column, column)].to_numpy(float),
                theirs[column].to_numpy(float),
                err_msg=f"realization {k} {column}",
            )
        seen.append(mine["long"].to_numpy())
    assert not np.array_equal(seen[0], seen[1])  # the realizations differ


def test_adding_realizations_runs_only_the_new_ones(idealized_met, tmp_path, client, stand_in):
    hysplit = counting(stand_in)
    single = config_for(idealized_met, tmp_path, 1, hysplit)
    model = Model(single.output, OURS, single)
    assert set(model.run(client=client, quiet=True).values()) == {"complete"}
    assert runs(hysplit) == 1
    plain = model.footprints["default"].load().compute()
    assert "realization" not in plain.dims

    ensemble = config_for(idealized_met, tmp_path, N, hysplit)
    model = Model(ensemble.output, OURS, ensemble)  # the count is no result setting
    run = model.plan()
    sim_id = OURS[0].sim_id
    assert len(run) == N - 1 and run.sim_ids == ()
    assert [run.key(sim_id, p) for p, _ in run.items()][0].endswith(f"{sim_id}-realizations-1")
    assert set(run.execute(client, quiet=True).values()) == {"complete"}
    assert runs(hysplit) == N  # realization 0 is the plain run, kept
    assert model.plan().sim_ids == () and len(model.plan()) == 0

    foot = model.footprints["default"].load()
    assert foot.dims[:2] == ("realization", "simulation")
    assert list(foot["realization"].values) == list(range(N))
    values = foot.compute()
    np.testing.assert_array_equal(values.sel(realization=0).values, plain.values)
    assert not np.array_equal(values.sel(realization=1).values, plain.values)
    one = model.footprints["default"].load(realization=2).compute()
    np.testing.assert_array_equal(one.values, values.sel(realization=2).values)

    counts = model.ensemble_status()
    assert list(counts["complete"]) == [1] * N
    assert list(counts["prefix"]) == ["", "realizations/1/", "realizations/2/"]
    assert model.status(realization=2).counts()["complete"] == 1
    assert (tmp_path / "store" / "realizations" / "2" / "particles").is_dir()

    # verify reads every realization against the one registry, and names the damaged one.
    assert model.verify().ok
    damaged = tmp_path / "store" / "realizations" / "1" / "particles" / f"{sim_id}.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    report = model.verify(repair=True)
    assert list(report.damaged) == [f"realizations/1/{sim_id}"]
    assert not damaged.exists() and model.status(realization=1).counts()["pending"] == 1


def test_each_realization_is_a_task_of_its_own(idealized_met, tmp_path):
    config = config_for(idealized_met, tmp_path, 2)
    run = Model(config.output, OURS, config).plan()
    delayed = run.to_delayed()
    sim_id = OURS[0].sim_id
    assert [d.key for d in delayed][0] == task_key(run.token, sim_id)
    assert delayed[1].key.startswith("stilt-sim-") and delayed[1].key.endswith("-realizations-1")
    args, _ = run.task(sim_id, "realizations/1/")
    assert args[2].hysplit.seed == 8 and args[0].root.endswith("store/realizations/1")


@pytest.mark.parametrize(
    ("hysplit", "message"),
    [
        ({"seed": None}, r"hysplit: realizations: 3 needs a seed"),
        ({"seed": -1}, r"realization 2 \(seed 1\) gets HYSPLIT's SEED -2, as realization 0"),
    ],
)
def test_ensembles_that_would_not_be_reproducible_are_refused(
    idealized_met, tmp_path, hysplit, message
):
    with pytest.raises(ConfigError, match=message):
        config_for(idealized_met, tmp_path, N, **hysplit)


def test_a_negative_seed_that_repeats_nothing_is_taken(idealized_met, tmp_path):
    config = config_for(idealized_met, tmp_path, N, seed=-2)  # SEEDs -3, -2, -1
    assert [config.hysplit.realization(k).seed for k in range(N)] == [-2, -1, 0]


def variant_config(idealized_met, tmp_path, name: str, executable: Path, **extra) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            "mets": {"idealized": idealized_met},
            "hysplit": {"n_hours": -2, "numpar": 50, "seed": 7, "executable": str(executable)},
            "footprints": {"default": GRID},
            "output": str(tmp_path / name),
            **extra,
        }
    )


COARSE = {**GRID, "xres": 0.05}


def test_variants_equal_their_single_variant_projects(idealized_met, tmp_path, client, stand_in):
    hysplit = counting(stand_in)
    variants = {
        "more": {"hysplit": {"numpar": 80}},
        "coarse": {"footprints": {"default": COARSE}},  # the plain particles, another grid
    }
    config = variant_config(idealized_met, tmp_path, "store", hysplit, variants=variants)
    model = Model(config.output, OURS, config)
    run = model.plan()
    assert [p for p, _ in run.items()] == ["", "variants/more/", "variants/coarse/"]
    assert run.shares("variants/coarse/") == "" and run.shares("variants/more/") is None
    sim_id = OURS[0].sim_id
    assert model.run(client=client, quiet=True) == {
        sim_id: "complete",
        f"variants/more/{sim_id}": "complete",
        f"variants/coarse/{sim_id}": "complete",
    }
    assert runs(hysplit) == 2  # the coarse footprint is made from the plain particles
    assert not (tmp_path / "store" / "variants" / "coarse" / "particles").exists()
    assert len(model.plan()) == 0

    single = {
        "more": variant_config(idealized_met, tmp_path, "more", hysplit, hysplit={
            "n_hours": -2, "numpar": 80, "seed": 7, "executable": str(hysplit)}),
        "coarse": variant_config(
            idealized_met, tmp_path, "coarse", hysplit, footprints={"default": COARSE}
        ),
    }  # fmt: skip
    for name, alone in single.items():
        reference = Model(alone.output, OURS, alone)
        assert set(reference.run(client=client, quiet=True).values()) == {"complete"}
        expected = reference.footprints["default"].load().compute()
        got = model.footprints["default"].load(variant=name).compute()
        np.testing.assert_array_equal(got.values, expected.values)
        assert got.sizes == expected.sizes
    assert model.footprints["default"].load(variant="more").sizes["lon"] == 40
    assert model.ensemble_status()["complete"].tolist() == [1, 1, 1]


def test_a_changed_variant_is_refused_and_a_new_one_taken(idealized_met, tmp_path, stand_in):
    hysplit = counting(stand_in)
    first = variant_config(
        idealized_met, tmp_path, "store", hysplit, variants={"more": {"hysplit": {"numpar": 80}}}
    )
    Model(first.output, OURS, first).register()
    changed = first.model_copy(update={"variants": {"more": first.variants["more"].model_copy(
        update={"hysplit": {"numpar": 90}})}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"variants\.more\.hysplit\.numpar: 80 → 90"):
        Model(changed.output, OURS, changed).register()
    dumped = first.model_dump(mode="json")
    dumped["variants"]["less"] = {"hysplit": {"numpar": 20}}
    added = ModelConfig.from_dict(dumped)
    Model(added.output, OURS, added).register()
    with pytest.raises(ConfigError, match=r"variant 'x': hysplit\.numpar"):
        ModelConfig.from_dict({**first.model_dump(mode="json"),
                               "variants": {"x": {"hysplit": {"numpar": 0}}}})  # fmt: skip


def test_a_variant_sharing_particles_runs_after_their_task(idealized_met, tmp_path, stand_in):
    config = variant_config(
        idealized_met, tmp_path, "store", counting(stand_in),
        variants={"coarse": {"footprints": {"default": COARSE}}},
    )  # fmt: skip
    run = Model(config.output, OURS, config).plan()
    plain, coarse = run.to_delayed()
    assert plain.key in dict(coarse.dask) and plain.key == run.key(OURS[0].sim_id)
    assert coarse.key == run.key(OURS[0].sim_id, "variants/coarse/")
    location = run.location("variants/coarse/")
    assert location.url("particles/x.parquet") == str(tmp_path / "store" / "particles/x.parquet")
    assert location.url("footprints/x") == str(tmp_path / "store/variants/coarse/footprints/x")


def test_futures_send_every_realization(idealized_met, tmp_path, client):
    config = config_for(idealized_met, tmp_path, 2)
    futures = Model(config.output, OURS, config).run(client=client, wait=False)
    assert [f.key.endswith("-realizations-1") for f in futures] == [False, True]
    assert client.gather(futures) == ["complete", "complete"]
