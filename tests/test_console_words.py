"""How the console words what the service records (issue 22): who acted, a network
alarm's timeline line, the service's own notes and a drill run's notes, in both
languages; and the language sweep's checks (page_words.py) finding what the issue saw."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from coordinator.config.catalog import load_catalog
from coordinator.reports.drill import run_text, stream_name
from coordinator.web.i18n import translator
from coordinator.web.page import Readable
from coordinator.models import TimelineEvent
from coordinator.web.pages.incident_text import actor_text, alarm_line, event_actor, note_text

from .conftest import REPO
from .page_words import Ids, problems


def test_the_checks_find_what_the_issue_saw() -> None:
    """The sweep's own test: each thing issue 22 saw on a page is found."""
    ids = Ids(words={"chen-li"})
    assert problems("⚠ role tech (…): level 1: no one available (team tech-support, …)", "zh", ids)
    assert any("internal name" in p for p in problems("时间线 role=leader, via=sms, level=0", "zh", ids))
    assert any("None" in p for p in problems("surge_data=None", "en", ids))
    assert any("raw key" in p for p in problems("总览 overview.title", "zh", ids))
    assert problems("Timeline: major scripted", "en", ids) and problems("24 h: 1 complaints", "en", ids)
    assert problems("地区 ningbo", "zh", ids) and problems("状态 scripted 自动 auto", "zh", ids)
    assert problems("chen-li · 组长 INC-20261124-17d9cf 短信 SMS 宁波 v2", "zh", ids) == []
    assert problems("Overview · chen-li · leader · SMS and email", "en", ids) == []


@pytest.mark.parametrize(("stored", "read"), [
    ("stream broadband/ningbo has no learned baseline yet: the playbook was triggered directly, detection not "
     "exercised", "投诉流 宽带故障 · 宁波 尚无已学习的基线：直接启动了预案，未检验检测环节"),
    ("stream broadband/ningbo has no learned baseline yet: judged as a new stream would be",
     "投诉流 宽带故障 · 宁波 尚无已学习的基线：按新投诉流的起始基线检测（仅识别明显突增）"),
    ("no surge was detected while the synthetic complaints came in: the playbook was triggered directly",
     "模拟投诉期间未检测到突增：直接启动了预案"),
    ("stream broadband/* has no learned baseline yet: the playbook was triggered directly, detection not exercised; "
     "a drill incident was already open on this key: DRL-20261124-abc123",
     "投诉流 宽带故障 · 全部地区 尚无已学习的基线：直接启动了预案，未检验检测环节；"
     "该投诉流上已有演练事件在处置中：DRL-20261124-abc123"),
    ("all acknowledged", "全员已确认"), ("time is up", "演练时间到"),
    ("the incident was resolved by hand", "事件被手动解除"),
    ("no instance was running at 2026-11-25T02:00:00+00:00", "计划时间没有运行中的服务实例"),
    ("something new", "something new"),  # a text no pattern knows is shown as it is
])
def test_a_drill_runs_notes_read_in_chinese(stored: str, read: str) -> None:
    catalog = load_catalog(REPO)
    assert run_text(stored, lambda key: stream_name(catalog, key)) == read


@pytest.mark.parametrize(("kind", "data", "zh", "en"), [
    ("alarm", {"source": "alertmanager", "name": "BaseStationDown", "summary": "温州鹿城5号基站退服",
               "labels": "alertname=BaseStationDown, city=WZ", "dedup_key": "5e1f"},
     '告警 <code>BaseStationDown</code> 触发：温州鹿城5号基站退服 <code class="labels">alertname=BaseStationDown, city=WZ</code>',
     'alarm <code>BaseStationDown</code> firing: 温州鹿城5号基站退服 <code class="labels">alertname=BaseStationDown, '
     'city=WZ</code>'),
    ("alarm", {"name": "OltDown", "episode": 2},
     "告警 <code>OltDown</code> 触发 · 第 2 次发生", "alarm <code>OltDown</code> firing · episode 2"),
    ("alarm_cleared", {"name": "OltDown", "summary": "<b>掉线</b>"},
     "告警 <code>OltDown</code> 已恢复：&lt;b&gt;掉线&lt;/b&gt;", "alarm <code>OltDown</code> cleared: &lt;b&gt;掉线&lt;/b&gt;"),
    ("alarm_acknowledged", {"name": "transmission_cut"},
     "告警 <code>transmission_cut</code> 已在告警源认领", "alarm <code>transmission_cut</code> acknowledged at its source"),
])
def test_a_network_alarms_timeline_line_reads_in_both_languages(kind: str, data: dict[str, object], zh: str,
                                                                 en: str) -> None:
    """The alarm's name and labels as code (the monitoring system's identifiers), its
    summary as the source's text (escaped), the rest in the page's language."""
    assert alarm_line(kind, data, translator("zh")) == zh
    assert alarm_line(kind, data, translator("en")) == en


@pytest.mark.parametrize(("actor", "zh", "en"), [
    ("admin", "管理员（API 令牌）", "admin (API token)"), ("alertmanager", "网络告警（Alertmanager）",
                                                       "network alarm (Alertmanager)"),
    ("pagerduty", "网络告警（PagerDuty）", "network alarm (PagerDuty)"), ("drill:weekly", "演练", "drill"),
    ("auto", "自动", "auto-approval"), ("surge-detector", "监测自动发现", "by the detector"), ("system", "", ""),
    ("chen-li", "陈丽", "陈丽"), ("nobody-known", "nobody-known", "nobody-known"),
])
def test_who_acted_reads_as_words(actor: str, zh: str, en: str) -> None:
    catalog = load_catalog(REPO)
    for lang, expected in (("zh", zh), ("en", en)):
        assert actor_text(actor, Readable(catalog, ZoneInfo("Asia/Shanghai")), translator(lang)) == expected


def test_the_service_resolving_on_cleared_alarms_reads_as_words() -> None:
    note = "alarm BaseStationDown cleared; every alarm on the incident has cleared"
    assert note_text(note, translator("zh")) == "告警 <code>BaseStationDown</code> 已恢复，本事件的告警均已恢复"
    assert note_text("已核实 <ok>", translator("en")) == "已核实 &lt;ok&gt;"


def test_an_alarms_own_events_name_only_its_source() -> None:
    rd = Readable(load_catalog(REPO), ZoneInfo("Asia/Shanghai"))
    at = datetime(2026, 11, 24, tzinfo=timezone.utc)
    fired = TimelineEvent(at=at, kind="alarm", actor="alertmanager", data={"name": "OltDown"})
    opened = TimelineEvent(at=at, kind="opened", actor="alertmanager", data={})
    assert event_actor(fired, rd, translator("zh")) == "Alertmanager"
    assert event_actor(opened, rd, translator("zh")) == "网络告警（Alertmanager）"
