"""Registration as a commit: concurrent registrants, the one row mapping, settings changes."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import xarray as xr
from store_helpers import expected_chunk, make_config, make_receptors, run_synthetic

from pystilt_dask.errors import ConfigError, ReceptorError
from pystilt_dask.model import Model
from pystilt_dask.receptors import MultiPointReceptor
from pystilt_dask.store import layout, registry

TRIALS = 8
REGISTRANTS = 4


def _register(barrier, roots, receptors, config, results) -> None:
    for root in roots:
        barrier.wait()  # every registrant starts each trial at the same instant
        results.put((root, Model(root, receptors, config).register_pending()))


@pytest.mark.slow
def test_concurrent_registrants_register_every_receptor_exactly_once(tmp_path):
    config = make_config(tmp_path)
    receptors = make_receptors(20)
    # Overlapping sets: receptors 3..7 are in two registrants' tables, and so on.
    subsets = [receptors[3 * k : 3 * k + 8] for k in range(REGISTRANTS)]
    roots = [str(tmp_path / f"trial{t}") for t in range(TRIALS)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(REGISTRANTS), ctx.Queue()
    processes = [
        ctx.Process(target=_register, args=(barrier, roots, subset, config, results))
        for subset in subsets
    ]
    for process in processes:
        process.start()
    reported = [results.get(timeout=300) for _ in range(TRIALS * REGISTRANTS)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    expected = {r.sim_id for subset in subsets for r in subset}
    for root in roots:
        new = [sim_id for where, ids in reported if where == root for sim_id in ids]
        assert sorted(new) == sorted(expected)  # each registered by exactly one registrant
        model = Model(root)
        table = model.registry().table
        assert sorted(table.index) == sorted(expected)
        assert table["row"].tolist() == list(range(len(expected)))
        ids = table.index.tolist()
        for name in ("coarse", "fine"):
            assert model.footprints[name].load()["simulation"].values.tolist() == ids
            plain = xr.open_zarr(f"{root}/footprints/{name}.zarr", consolidated=False)
            assert plain["simulation"].values.tolist() == ids
            assert plain["foot"].sizes["simulation"] == len(ids)
    # Footprints written afterwards read back under the right ids.
    model = Model(roots[0])
    for sim_id in model.simulations.ids():
        assert run_synthetic(model.location, sim_id, model.config) == "complete"
    foot = model.footprints["fine"].load()
    for sim_id in model.simulations.ids():
        got = foot.sel(simulation=sim_id).values
        np.testing.assert_array_equal(got, expected_chunk(model, sim_id, "fine"))


def test_a_registrant_that_loses_a_commit_race_takes_the_next_version(tmp_path):
    config = make_config(tmp_path)
    model = Model(tmp_path / "p", make_receptors(3), config)
    model.register_pending()
    # Another registrant commits version 1 between this one's read and its commit.
    stale = registry.read(model.location)
    other = make_receptors(5)[3:]
    assert registry.commit(model.location, [
        registry.record(r, stale.next_row + i, "synthetic", ["coarse"], None, stale.table[
            "registered"].iloc[0]) for i, r in enumerate(other)
    ])  # fmt: skip
    new, committed = registry.register(model.location, make_receptors(6), "synthetic", ["coarse"])
    assert new == [make_receptors(6)[5].sim_id]
    assert committed.version == 2 and committed.row(new[0]) == 5
    assert registry.versions(model.location) == [0, 1, 2]


def test_run_control_settings_may_change_but_result_settings_may_not(tmp_path):
    config = make_config(tmp_path)
    Model(tmp_path / "p", make_receptors(2), config).register_pending()
    hysplit = config.hysplit.model_copy(update={"timeout": 5.0, "executable": "/opt/hycs_std"})
    relaxed = config.model_copy(update={"hysplit": hysplit})
    assert Model(tmp_path / "p", make_receptors(3), relaxed).register_pending()
    assert Model(tmp_path / "p").config.hysplit.timeout == 5.0
    changed = config.model_copy(
        update={"hysplit": config.hysplit.model_copy(update={"numpar": 99})}
    )
    with pytest.raises(ConfigError, match=r"hysplit.numpar: 10 → 99.*new project"):
        Model(tmp_path / "p", make_receptors(4), changed).register_pending()


def test_the_registry_layout(tmp_path):
    model = Model(tmp_path / "p", make_receptors(2), make_config(tmp_path))
    model.register_pending()
    assert model.location.exists(layout.registry_key(0))
    assert layout.registry_key(12) == ".stilt/registry/000000012.parquet"


def test_receptors_that_share_an_id_without_being_the_same_are_refused(tmp_path):
    model = Model(tmp_path / "p", make_receptors(1), make_config(tmp_path))
    model.register_pending()
    # Multipoint ids round points to 1e-5 degrees: these two are apart, their ids are not.
    one, other = (
        MultiPointReceptor(time="2023-07-15 18:00", longitudes=[-111.8, lon], latitudes=[40.7] * 2,
                           altitudes=[5, 5])
        for lon in (-111.9, -111.9000001)
    )  # fmt: skip
    assert one.sim_id == other.sim_id and one != other
    with pytest.raises(ReceptorError, match=rf"^two receptors have one simulation id {one.sim_id}"):
        registry.register(model.location, [one, other], "synthetic", ["coarse"])
    assert registry.register(model.location, [one], "synthetic", ["coarse"])[0] == [one.sim_id]
    with pytest.raises(
        ReceptorError, match=rf"^simulation {one.sim_id} is registered as .*-111\.9\]"
    ):
        registry.register(model.location, [other], "synthetic", ["coarse"])
    # The same points in another order are the same receptor.
    again = MultiPointReceptor(time="2023-07-15 18:00", longitudes=[-111.9, -111.8],
                               latitudes=[40.7] * 2, altitudes=[5, 5])  # fmt: skip
    assert registry.register(model.location, [again], "synthetic", ["coarse"])[0] == []
    assert registry.versions(model.location) == [0, 1]
