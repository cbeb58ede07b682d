"""POST /api/admin/reload across two real `coordinator serve` processes sharing one store
(one Redis; one SQLite file): a changed playbook is taken by both; a broken file is
refused by both, the problem named, and both go on serving the config they had."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coordinator.cluster import config_fingerprint
from coordinator.commands.sandboxed import free_port

from .service_process import ServeProcess

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(params=["redis", "sqlite"])
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Path, list[ServeProcess]]]:
    config = tmp_path / "config"
    shutil.copytree(FIXTURES / "good", config)
    if request.param == "redis":
        store_url = f"{request.getfixturevalue('redis_url')}?prefix=cluster-{uuid.uuid4().hex[:8]}:"
    else:
        store_url = f"sqlite:///{tmp_path}/shared.db"
    served = [ServeProcess(config, store_url, free_port(), tmp_path / f"serve-{i}.log",
                           COORDINATOR_NO_CHANNELS="1", COORDINATOR_USERS_FILE=str(tmp_path / "users.yaml"))
              for i in range(2)]
    try:
        for process in served:
            await process.start()
        yield config, served
    finally:
        for process in served:
            process.stop()


async def reload(process: ServeProcess) -> tuple[int, dict]:
    async with aiohttp.ClientSession(headers=process.headers) as session:
        async with session.post(f"{process.url}/api/admin/reload?wait=15") as resp:
            return resp.status, await resp.json()


async def metric(process: ServeProcess, name: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{process.url}/metrics") as resp:
            text = await resp.text()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def instances_up(process: ServeProcess, count: int) -> None:
    """Both have beaten into the registry (each beats once a second from its start)."""
    for _ in range(100):
        status, body = await reload(process)
        if status == 200 and len(body["took"]) == count:
            return
    raise AssertionError(f"the instances never all answered: {body}")


async def test_a_reload_reaches_both_processes(services: tuple[Path, list[ServeProcess]]) -> None:
    config, (one, two) = services
    await instances_up(one, 2)
    assert (await one.get("/healthz"))["playbooks"] == 1

    # a changed playbook file and a new one: both take them
    playbook = (config / "playbooks" / "outage.yaml").read_text(encoding="utf-8")
    (config / "playbooks" / "outage-major.yaml").write_text(
        playbook.replace("id: outage", "id: outage-major").replace("min_count: 10", "min_count: 50"),
        encoding="utf-8")
    (config / "playbooks" / "outage.yaml").write_text(playbook.replace("title: 移动网络故障", "title: 移动网络大面积故障"),
                                                    encoding="utf-8")
    status, took = await reload(one)
    assert status == 200, took
    assert took["result"] == "took" and len(took["took"]) == 2 and took["refused"] == took["no_answer"] == []
    assert {i["config"] for i in took["instances"]} == {config_fingerprint(config)}
    for process in (one, two):
        assert (await process.get("/healthz"))["playbooks"] == 2
        assert await metric(process, "coordinator_config_last_reload_successful") == 1

    # a broken file: both refuse, naming it, and keep serving what they had
    (config / "playbooks" / "outage-major.yaml").write_text(
        playbook.replace("id: outage", "id: outage-major").replace("min_count: 10", "min_count: lots"),
        encoding="utf-8")
    status, refused = await reload(two)
    assert status == 409, refused
    assert refused["error"]["code"] == "reload_refused"
    report = refused["reload"]
    assert report["result"] == "refused" and sorted(report["refused"]) == sorted(took["took"])
    for instance in report["instances"]:
        assert instance["outcome"] == "refused"
        assert any(p.startswith("playbooks/outage-major.yaml:5: trigger.min_count") for p in instance["problems"]), \
            instance["problems"]
        assert instance["config"] == took["instances"][0]["config"]  # the config still in use
    for process in (one, two):
        assert (await process.get("/healthz"))["playbooks"] == 2
        assert await metric(process, "coordinator_config_last_reload_successful") == 0
        assert process.proc is not None and process.proc.poll() is None
