"""playbooks/upgrade.yml orchestrates a rolling upgrade: order, serial steps, drains, refusals, a
failure mid-run, and `ai4os-kit status` telling the truth afterwards.

The nodes are this machine and the agents are TEST DOUBLES (cluster_api_double.py, day2_bed.py):
Nomad and Consul cannot run here. The roles themselves are not converged (day2_converge false:
the orchestration alone); they converge on real systemd containers in the molecule scenarios.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.day2_bed import Day2Bed, events

from ai4os_kit.cli import main


@pytest.fixture()
def bed(tmp_path: Path) -> Iterator[Day2Bed]:
    made = Day2Bed(tmp_path)
    yield made
    made.close()


def _steps(output: str, task: str) -> list[str]:
    """Hosts in the order they ran a task whose name contains ``task`` (ok or changed)."""
    return [h for t, h, s in events(output) if task in t and s in ("ok", "changed")]


def _status(bed: Day2Bed, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict]:
    for key, value in bed.env().items():
        monkeypatch.setenv(key, value)
    capfd.readouterr()
    rc = main(["status", str(bed.inventory), "--json",
               "--nomad", bed.agents[("nomad", bed.servers[0])].api.removesuffix("/v1"),
               "--consul", bed.agents[("consul", bed.servers[0])].api.removesuffix("/v1")])
    return rc, json.loads(capfd.readouterr().out)


def test_servers_one_at_a_time_then_clients_in_drained_batches(bed: Day2Bed, capfd, monkeypatch) -> None:
    old = bed.backups / "nomad-20200101T000000Z-2.0.3.snap"
    bed.backups.mkdir(mode=0o700)
    for day in range(1, 11):  # ten older snapshots: the run's own makes eleven, the oldest goes
        (bed.backups / f"nomad-202001{day:02d}T000000Z-2.0.3.snap").write_bytes(b"old")
    for key, value in bed.env().items():
        monkeypatch.setenv(key, value)
    rc = main(["upgrade", str(bed.inventory), "--batch", "2", "--rehearse", "--ansible-args", f"-e @{bed.vars_file()}"])
    out = capfd.readouterr().out
    assert rc == 0, out[-5000:]
    assert '"day2_client_batch": "2", "day2_converge": false' in out  # what the command passed, printed

    # servers: Consul ones, then Nomad ones, each alone with its health wait before the next
    # (the first check is the preflight's, asked through the first server)
    assert _steps(out, "Wait until the datacenter is healthy") == bed.servers[:1] + bed.servers
    assert _steps(out, "Wait until the region is healthy") == bed.servers[:1] + bed.servers
    plays = re.findall(r"^PLAY \[(.+?)\]", out, re.MULTILINE)
    assert plays.count("Consul servers, one at a time") == 3 and plays.count("Nomad servers, one at a time") == 3
    assert plays.index("Nomad servers, one at a time") > plays.index("Consul servers, one at a time")
    # clients: batches of 2, every client drained before it is touched and made eligible after
    assert plays.count("Clients, in batches, drained first") == 3
    drains = [(t, h) for t, h, s in events(out) if s == "changed" and ("Drain the client" in t or "eligible again" in t)]
    # (inside a batch the two hosts run side by side: Ansible prints them in the order they finish)
    assert sorted(h for t, h in drains if "Drain" in t) == sorted(bed.clients)
    for batch in range(3):
        chunk = drains[batch * 4:(batch + 1) * 4]
        assert [("Drain" in t) for t, _ in chunk] == [True, True, False, False], chunk
        assert {h for _, h in chunk[:2]} == {h for _, h in chunk[2:]}, chunk
    # the Nomad API saw each drain with the kit's deadline and meta, then eligibility back
    drained = [n for n in bed.nomad.nodes.values() if n["LastDrain"]]
    assert len(drained) == len(bed.clients)
    assert all(n["LastDrain"]["Meta"] == {"ai4os_kit": "upgrade"} and n["SchedulingEligibility"] == "eligible"
               for n in drained)
    # snapshots of this run, checked and kept; the oldest beyond 10 removed
    snaps = sorted(p.name for p in bed.backups.iterdir())
    assert any(re.fullmatch(r"consul-local-\d{8}T\d{6}Z-2\.0\.2\.snap", s) for s in snaps)
    assert any(re.fullmatch(r"nomad-\d{8}T\d{6}Z-2\.0\.4\.snap", s) for s in snaps)
    assert len([s for s in snaps if s.startswith("nomad-")]) == 10 and not old.exists()
    assert oct(bed.backups.stat().st_mode & 0o777) == "0o700"
    new_nomad = next(bed.backups / s for s in snaps if s.startswith("nomad-") and "2.0.4" in s)
    assert new_nomad.read_bytes() == bed.nomad.snapshot

    rc, report = _status(bed, capfd, monkeypatch)
    assert rc == 0, report["problems"]
    assert report["healthy"] and report["nomad"]["leader_node"] == f"{bed.servers[0]}.{report['region']}"


def test_preflight_refuses_an_unhealthy_cluster_before_anything_changes(bed: Day2Bed) -> None:
    bed.consul.fail_server(bed.servers[2])
    proc = bed.run("upgrade.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Consul datacenter local is not healthy" in out and f"{bed.servers[2]} unhealthy" in out
    assert not bed.backups.exists() or not list(bed.backups.iterdir())
    assert not any(n["LastDrain"] for n in bed.nomad.nodes.values())


def test_preflight_refuses_a_downgrade(bed: Day2Bed) -> None:
    bed.nomad.servers[bed.servers[1]]["Version"] = "2.1.0"
    proc = bed.run("upgrade.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"{bed.servers[1]} run a Nomad newer than nomad_version 2.0.4" in " ".join(out.split())
    assert not any(n["LastDrain"] for n in bed.nomad.nodes.values())


def test_a_server_that_does_not_come_back_stops_the_run_with_its_snapshot_and_the_truth(bed: Day2Bed, capfd,
                                                                                       monkeypatch) -> None:
    """The second Consul server's agent dies when its step starts: the run stops there, the third
    server and every client are untouched, the snapshot is on the controller, status says so."""
    victim = bed.servers[1]
    bed.agents[("consul", victim)].crash_on = lambda method, path: True
    proc = bed.run("upgrade.yml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    flat = " ".join(out.split())
    assert f"STOPPED at {victim} during the Consul server step" in flat
    assert "Resume: fix the cause" in flat and "ai4os-kit restore" in flat
    # the preflight's check and the first server's; the second failed before it, the third never started
    assert _steps(out, "Wait until the datacenter is healthy") == [bed.servers[0]] * 2
    assert "Nomad servers, one at a time" not in out and not any(n["LastDrain"] for n in bed.nomad.nodes.values())
    assert [p.name for p in bed.backups.glob("consul-local-*.snap")] and [p.name for p in bed.backups.glob("nomad-*.snap")]

    rc, report = _status(bed, capfd, monkeypatch)
    assert rc == 3 and not report["healthy"]
    dc = report["consul"][0]
    assert not dc["healthy"] and dc["leader_node"] == bed.servers[0]
    assert any(f"{victim}: not an alive Consul member (failed)" == p for p in report["problems"])
    assert report["nomad"]["healthy"]  # Nomad was never touched
