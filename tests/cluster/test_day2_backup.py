"""Backups, restores and gossip key rotation through the day-2 steps of the roles; `status --nodes`.

`ai4os-kit backup` writes checked Raft snapshots and the host data of stateful components to the
controller, `restore` puts one back; the consul and nomad roles' keyring step installs the key of
secrets.yml, makes it the one in use and removes the old one, and refuses while an agent is down.
Agents are TEST DOUBLES (cluster_api_double.py): Nomad and Consul cannot run here.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.day2_bed import Day2Bed

from ai4os_kit.cli import main

STEP = Path(__file__).resolve().parent / "day2_step.yml"


@pytest.fixture()
def bed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Day2Bed]:
    made = Day2Bed(tmp_path)
    for key, value in made.env().items():
        monkeypatch.setenv(key, value)
    yield made
    made.close()


def test_backup_and_restore(bed: Day2Bed, capfd: pytest.CaptureFixture[str]) -> None:
    data = bed.tmp / "srv" / "component"  # a component's host data, placed on the cpu nodes for this test
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "state.db").write_bytes(b"rows v1")
    extra = {"day2_data": [{"component": "testdata", "group": "cpu", "paths": [str(data)]}],
             "ai4os_plan_components": ["testdata"]}
    assert main(["backup", str(bed.inventory), "--ansible-args", f"-e @{bed.vars_file(extra)} --limit local-server-1,local-cpu-1"]) == 0
    files = sorted(p.name for p in bed.backups.iterdir())
    stamp = re.search(r"\d{8}T\d{6}Z", files[0])[0]
    assert files == [f"consul-local-{stamp}-2.0.2.snap", f"data-testdata-local-cpu-1-{stamp}.tar.gz",
                     f"nomad-{stamp}-2.0.4.snap"], files
    assert (bed.backups / files[0]).read_bytes() == bed.consul.snapshot
    with tarfile.open(bed.backups / files[1]) as archive:
        assert archive.extractfile(str(data / "sub" / "state.db").lstrip("/")).read() == b"rows v1"
    assert not list(bed.tmp.glob("*.snap")) and not list(bed.tmp.glob("archive*"))  # nothing left on the node

    # a snapshot that does not match the checksum the agent sent is not kept
    bed.nomad.digest_override = "sha-256=" + "A" * 43 + "="
    assert main(["backup", str(bed.inventory), "--no-data", "--ansible-args", f"-e @{bed.vars_file()}"]) == 1
    assert "does not match the digest Nomad sent" in " ".join(capfd.readouterr().out.split())
    assert len(list(bed.backups.glob("nomad-*.snap"))) == 1
    bed.nomad.digest_override = None
    good = bed.nomad.snapshot

    # restore: the Nomad snapshot, then the component's data (changed since) in place
    (data / "sub" / "state.db").write_bytes(b"rows v2")
    assert main(["restore", str(bed.inventory), "--file", str(bed.backups / files[2]), "--yes",
                 "--ansible-args", f"-e @{bed.vars_file()}"]) == 0
    assert bed.nomad.restored == [good]
    assert main(["restore", str(bed.inventory), "--file", str(bed.backups / files[1]), "--yes",
                 "--ansible-args", f"-e @{bed.vars_file(extra)}"]) == 0
    assert (data / "sub" / "state.db").read_bytes() == b"rows v1"
    assert bed.consul.restored == []
    capfd.readouterr()

    # a file that is not a backup of this inventory is refused before anything runs on a node
    stray = bed.tmp / "consul-elsewhere-20260101T000000Z-2.0.2.snap"
    stray.write_bytes(b"x")
    assert main(["restore", str(bed.inventory), "--file", str(stray), "--yes",
                 "--ansible-args", f"-e @{bed.vars_file()}"]) == 1
    assert "not a backup file of this inventory" in " ".join(capfd.readouterr().out.split())
    assert bed.consul.restored == []


def test_gossip_keys_rotate_on_every_agent(bed: Day2Bed) -> None:
    """After `secrets --rotate` of a gossip key the roles' keyring step installs the new key, uses it
    and removes the old one; a second run changes nothing; a down agent stops it with the old key kept."""
    old = {f: "b2xkIGtleSBvZiB0aGUgZGF5LTIgdGVzdC1iZWQgISE=" for f in ("consul", "nomad")}
    bed.consul.keys, bed.nomad.keys = [old["consul"]], [old["nomad"]]
    for role, cluster, host in (("consul", bed.consul, "local-server-1"), ("nomad", bed.nomad, "local-server-1")):
        proc = bed.run(STEP, {"day2_role": role, f"{role}_day2_step": "keyring", "day2_hosts": host})
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert cluster.keys == [bed.gossip[role]], role
        assert "changed=3" in proc.stdout  # install, use, remove
        again = bed.run(STEP, {"day2_role": role, f"{role}_day2_step": "keyring", "day2_hosts": host})
        assert again.returncode == 0 and "changed=0" in again.stdout, role
        for value in (old[role], bed.gossip[role]):
            assert value not in proc.stdout + again.stdout, "a gossip key reached the output"

    bed.consul.keys = [old["consul"]]
    bed.consul.members["local-cpu-3"]["Status"] = "failed"
    proc = bed.run(STEP, {"day2_role": "consul", "consul_day2_step": "keyring", "day2_hosts": "local-server-1"})
    assert proc.returncode != 0
    assert "Consul agents down: local-cpu-3" in " ".join(proc.stdout.split())
    assert bed.consul.keys == [old["consul"]]


def test_status_reads_the_nodes_over_ssh_and_a_refused_token_is_explained(bed: Day2Bed, capfd) -> None:
    base = ["--nomad", bed.agents[("nomad", "local-server-1")].api.removesuffix("/v1"),
            "--consul", bed.agents[("consul", "local-server-1")].api.removesuffix("/v1")]
    assert main(["status", str(bed.inventory), "--json", "--nodes", *base]) == 0
    captured = capfd.readouterr()
    report = json.loads(captured.out)  # the playbook's output went to stderr
    assert "playbooks/status.yml" in captured.err
    assert report["node_facts"] and report["healthy"]
    assert [c["node"] for c in report["certificates"]] == ["127.0.0.1", "127.0.0.1"]  # this machine lists none
    bed.consul.tokens.pop(bed.read_tokens["consul"])  # the cluster does not know the status token (yet)
    assert main(["status", str(bed.inventory), *base]) == 1
    err = capfd.readouterr().err
    assert "refused the status token of secrets.yml" in err and "run playbooks/cluster.yml" in err
    bed.close()
    assert main(["status", str(bed.inventory), *base]) == 1
    err = capfd.readouterr().err
    assert "cannot reach the Nomad API" in err or "cannot reach the Consul API" in err
    assert "ssh -N -L 4646:127.0.0.1:4646" in err

