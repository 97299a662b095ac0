"""The PAPI summaries kept between runs: a base in the store, moved on by what changed since.

Every check compares with the day-by-day reference (``Summaries.add_all``) over
the rows the store holds at that moment. Nomad is the recorded-response TEST
DOUBLE (nomad_double.py) where the collector runs.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nomad_double import NomadDouble, fixture

from ai4os_kit.accounting.collector import collect
from ai4os_kit.accounting.model import Usage
from ai4os_kit.accounting.nomad_client import NomadSettings, NomadSource
from ai4os_kit.accounting.store import Store
from ai4os_kit.accounting.summary import BulkFold, Summaries, from_store

MAR1 = 1772323200  # 2026-03-01T00:00:00Z
DAY = 86400
IDS = [str(uuid.UUID(int=i + 1)) for i in range(8)]


def reference(store: Store, now: int) -> Summaries:
    return Summaries().add_all(store.iter_all(), now)


def same(got: Summaries, want: Summaries) -> None:
    assert (dict(got.daily), dict(got.users)) == (dict(want.daily), dict(want.users))
    for namespace in want.namespaces():
        assert got.tables(namespace) == want.tables(namespace)
    assert got.namespaces() == want.namespaces()


def base_cursor(store: Store) -> int | None:
    row = store.db.execute("SELECT cursor FROM summary_base").fetchone()
    return None if row is None else int(row[0])


# mostly before the runs' time (MAR1 + 5 days, later): rows that end are folded, then replaced
moments = st.integers(MAR1 - 2 * DAY, MAR1 + 4 * DAY) | st.integers(MAR1, MAR1 + 12 * DAY) | st.sampled_from([MAR1, MAR1 + DAY])


@st.composite
def versions(draw: st.DrawFn) -> tuple[int, Usage]:
    """An allocation (one of a few ids, so later versions replace earlier ones) as a collector would write it."""
    create = draw(moments)
    start = draw(st.none() | moments)
    end = draw(st.none() | moments)
    usage = Usage(draw(st.sampled_from(IDS[:4])), draw(st.sampled_from(["ai4eosc", "imagine"])), "job", "job.g[0]",
                  draw(st.none() | st.sampled_from(["", "u1", "u2"])), "node", "ifca",
                  draw(st.integers(0, 64_000)), draw(st.integers(0, 10**5)), draw(st.integers(0, 10**6)),
                  draw(st.integers(0, 10**7)), draw(st.integers(0, 8)), None, create, start, end,
                  "complete" if end else "running", 1)
    return draw(st.integers(0, 3)), usage  # modify index step: 0 leaves the stored row (not newer)


operations = st.one_of(
    st.tuples(st.just("write"), st.lists(versions(), min_size=1, max_size=4)),
    st.tuples(st.just("gone"), st.lists(st.sampled_from(IDS[:4]), max_size=3)),
    st.tuples(st.just("delete"), st.sampled_from(IDS[:4])),
    st.tuples(st.just("summary"), st.integers(0, 3 * DAY)),  # time passes, then a run's summaries
    st.tuples(st.just("behind"), st.integers(1, DAY)),  # a run whose clock is behind the last one
)


@settings(max_examples=300, deadline=None, database=None)
@given(history=st.lists(operations, max_size=16))
def test_the_kept_base_gives_what_every_row_read_again_gives(tmp_path_factory: pytest.TempPathFactory,
                                                             history: list[tuple]) -> None:
    """Rows replaced after their fold (ended, reopened, moved to another owner), closed as gone, deleted,
    ending after the run's time; runs whose clock is behind: each run equals the reference over the store."""
    now = MAR1 + 5 * DAY
    modify: dict[str, int] = {}
    with Store(tmp_path_factory.mktemp("s") / "a.sqlite") as store:
        for op in history:
            if op[0] == "write":
                rows = []
                for step, usage in op[1]:
                    modify[usage.alloc_id] = modify.get(usage.alloc_id, 0) + step
                    rows.append(usage._replace(modify_index=modify[usage.alloc_id]))
                store.upsert(rows, now)
            elif op[0] == "gone":
                store.close_gone(op[1])
            elif op[0] == "delete":  # as the id index's clean-up of a cut-short bulk load deletes a copy
                store.db.execute("DELETE FROM allocations WHERE alloc_id = ?", (op[1],))
            elif op[0] == "summary":
                now += op[1]
                same(from_store(store, now), reference(store, now))
                assert base_cursor(store) == store.meta("change_seq")
            else:
                before = store.db.execute("SELECT cursor, at, data FROM summary_base").fetchone()
                same(from_store(store, now - op[1]), reference(store, now - op[1]))
                if before is not None and before[1] > now - op[1]:  # kept later: read whole, nothing kept
                    assert store.db.execute("SELECT cursor, at, data FROM summary_base").fetchone() == before
        now += DAY
        same(from_store(store, now), reference(store, now))
        same(from_store(store, now), reference(store, now))  # read from the base just kept


def _usage(alloc: str, end: int | None, owner: str = "u1", millicores: int = 1000) -> Usage:
    return Usage(alloc, "ai4eosc", "job", "job.g[0]", owner, "node", "ifca", millicores, 0, 100, 200, 0, None,
                 MAR1, MAR1 + 60, end, "complete" if end else "running", 1)


def test_a_later_run_reads_only_the_changed_open_and_late_rows(tmp_path: Path) -> None:
    now = MAR1 + 2 * DAY
    with Store(tmp_path / "a.sqlite") as store:
        store.upsert([_usage(IDS[0], MAR1 + DAY), _usage(IDS[1], None), _usage(IDS[2], now + DAY),
                      _usage(IDS[3], MAR1 + 2 * 3600)], now)
        same(from_store(store, now), reference(store, now))
        store.upsert([_usage(IDS[4], MAR1 + DAY)], now)
        with store.summary_snapshot() as snapshot:
            cursor = snapshot.base()[0]  # type: ignore[index]
            read = sum(len(numbers) for numbers, _ in snapshot.chunks(cursor, 10))
            late = snapshot.pending(cursor, now)
        assert read == 3  # the new row, the open one, the one that ends after the last run's time
        assert late == [IDS[2]]
        same(from_store(store, now + 2 * DAY), reference(store, now + 2 * DAY))
        with store.summary_snapshot() as snapshot:  # it has ended by now: folded, no longer read
            assert sum(len(numbers) for numbers, _ in snapshot.chunks(snapshot.base()[0], 10)) == 1  # type: ignore[index]


def test_a_folded_row_replaced_leaves_its_old_values_to_take_out(tmp_path: Path) -> None:
    now = MAR1 + 2 * DAY
    with Store(tmp_path / "a.sqlite") as store:
        store.upsert([_usage(IDS[0], MAR1 + DAY)], now)
        from_store(store, now)
        replaced = _usage(IDS[0], MAR1 + DAY + 3600, owner="u2", millicores=3000)
        store.upsert([replaced._replace(modify_index=2, create=MAR1 + DAY, start=MAR1 + DAY + 60)], now)
        retracted = store.db.execute("SELECT owner, cpu_millicores FROM summary_retract").fetchall()
        assert retracted == [("u1", 1000)]
        got = from_store(store, now)
        same(got, reference(store, now))
        assert set(got.users["ai4eosc"]) == {"u2"}  # u1 has nothing left, and is gone from users-agg
        assert set(got.daily["ai4eosc"]) == {MAR1 + DAY}  # so is 1 March
        assert store.db.execute("SELECT COUNT(*) FROM summary_retract").fetchone()[0] == 0


def test_a_write_between_the_read_and_the_keep_is_left_for_the_next_run(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    now = MAR1 + 2 * DAY
    with Store(tmp_path / "a.sqlite") as store:
        store.upsert([_usage(IDS[0], MAR1 + DAY)], now)
        from_store(store, now)
        kept = store.db.execute("SELECT cursor, data FROM summary_base").fetchone()
        store.upsert([_usage(IDS[1], MAR1 + DAY)], now)
        save = store.save_summary_base

        def write_first(*args: object) -> bool:  # another writer (a collector run by hand) gets in first
            store.upsert([_usage(IDS[0], MAR1 + DAY, owner="u2")._replace(modify_index=2)], now)
            return save(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "save_summary_base", write_first)
        assert set(from_store(store, now).users["ai4eosc"]) == {"u1"}  # what it read: u1's two allocations
        assert store.db.execute("SELECT cursor, data FROM summary_base").fetchone() == kept
        monkeypatch.undo()
        same(from_store(store, now), reference(store, now))


def test_a_bulk_load_that_wrote_an_allocation_twice_keeps_no_base(tmp_path: Path) -> None:
    """Its sums counted the copy the id index drops: the next summaries read the store instead."""
    now = MAR1 + 2 * DAY
    rows = [_usage(IDS[0], MAR1 + DAY), _usage(IDS[1], MAR1 + DAY), _usage(IDS[0], MAR1 + DAY)]
    columns = [list(column) for column in zip(*rows)]
    with Store(tmp_path / "a.sqlite") as store:
        assert store.begin_bulk()
        fold = BulkFold()
        fold.add([columns], now)
        store.upsert_columns([columns], now)
        assert store.end_bulk() is False and store.count() == 2
        assert base_cursor(store) is None
        same(from_store(store, now), reference(store, now))
        kept = BulkFold()  # what keeping the base regardless would have given: the copy counted twice
        kept.add([columns], now)
        kept.save(store)
        assert from_store(store, now).users != reference(store, now).users


def _source(double: NomadDouble) -> NomadSource:
    return NomadSource(NomadSettings(address=double.address, timeout=5))  # type: ignore[call-arg]


def test_a_first_collect_keeps_the_base_of_what_it_wrote(nomad_double: NomadDouble, tmp_path: Path) -> None:
    template = fixture("allocation-cpu-complete.json")
    now = 1772300000
    done = [nomad_double.create(template, now - 9 * 3600 + i) for i in range(5)]
    for i, alloc in enumerate(done):
        nomad_double.start(alloc, now - 8 * 3600 + i)
        nomad_double.finish(alloc, now - 3600 * (4 - i) if i < 4 else now + 600)  # the last ends after the run
    running = nomad_double.create(template, now - 3600, namespace="imagine")
    nomad_double.start(running, now - 1800)
    nomad_double.create(template, now - 60)  # queued
    with Store(tmp_path / "acct.sqlite") as store:
        collect(_source(nomad_double), store, clock=lambda: now)
        assert base_cursor(store) == store.meta("change_seq") > 0
        with store.summary_snapshot() as snapshot:
            assert snapshot.pending(0, now) == [done[4]]
            read = sum(len(numbers) for numbers, _ in snapshot.chunks(store.meta("change_seq"), 10))
        assert read == 3  # the running one, the queued one, the one that ends after the run
        same(from_store(store, now + 60), reference(store, now + 60))
        nomad_double.finish(running, now + 900)
        collect(_source(nomad_double), store, clock=lambda: now + 1200)  # not a bulk load: nothing kept by it
        same(from_store(store, now + 1200), reference(store, now + 1200))


def test_a_store_without_a_base_is_read_whole_once(tmp_path: Path) -> None:
    """A store written before the base existed (or a first run cut short): the first summaries read every row."""
    now = MAR1 + 2 * DAY
    with Store(tmp_path / "a.sqlite") as store:
        store.upsert([_usage(IDS[i], MAR1 + DAY) for i in range(4)], now)
        assert base_cursor(store) is None
        same(from_store(store, now), reference(store, now))
        assert base_cursor(store) == store.meta("change_seq")

