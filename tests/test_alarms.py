"""Network alarms, the pure part: alerts.yaml checked like the other files (problems with
file and line), an alarm routed to playbook, region and parameters (table-driven), its
state moving through firing, clearing and acknowledgement, and the two payload formats
read or refused naming the field."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from coordinator.alarms import decisions as decide
from coordinator.alarms.payloads import alertmanager_alarms, fingerprint, pagerduty_alarm, read_body
from coordinator.alarms.decisions import Alarm, AlarmAction, AlarmState, Outcome, Routed, Unrouted
from coordinator.config.catalog import check_config, load_catalog
from coordinator.errors import PayloadInvalid

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)

RULES = """\
alerts:
  - match: {alertname: BaseStationDown, severity: [critical, major]}
    source: alertmanager
    playbook: outage
    region: {label: city, map: {HZ: hangzhou, NB: ningbo}}
    params:
      cause: "{% if labels.site %}{{ labels.site }}基站退服{% endif %}"
    resolve_when_cleared: true
  - match: {alertname: BaseStationDown}
    playbook: outage
    region: {label: region, default: hangzhou}
    params:
      cause: {annotation: description}
    severity: critical
  - match: {class: cut}
    source: pagerduty
    playbook: outage
    region: ningbo
    params:
      cause: {label: component}
"""


def config_with(tmp_path: Path, alerts: str) -> Path:
    root = tmp_path / "config"
    shutil.copytree(FIXTURES / "good", root)
    (root / "alerts.yaml").write_text(alerts, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_catalog(config_with(tmp_path_factory.mktemp("alerts"), RULES)).alerts


def alarm(labels: dict[str, str], source: str = "alertmanager", **extra: Any) -> Alarm:
    return Alarm(source=source, key="f1", action=AlarmAction.firing, name=labels.get("alertname", ""),
                 labels=labels, **extra)


# --- alerts.yaml --------------------------------------------------------------------------


def test_the_shipped_samples_have_a_valid_alerts_file() -> None:
    assert (REPO / "alerts.yaml").is_file()
    assert check_config(REPO) == []
    assert len(load_catalog(REPO).alerts.rules) >= 2


def test_no_alerts_file_means_no_rules() -> None:
    assert load_catalog(FIXTURES / "good").alerts.rules == ()


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    root = config_with(tmp_path, """\
alerts:
  - match: {alertname: A}
    playbook: no-such-playbook
    region: hangzhou
  - match: {alertname: B}
    playbook: outage
    region: atlantis
  - match: {alertname: C}
    playbook: outage
    region: {label: city, map: {X: hangzhou, Y: mars}, default: venus}
    params:
      colour: blue
      cause: "{{ labels.site "
  - match: {alertname: D}
    playbook: outage
    region: hangzhou
    params:
      cause: {label: a, annotation: b}
  - match: {}
    playbook: outage
    region: hangzhou
    when: always
""")
    assert check_config(root) == [
        "alerts.yaml:3: alerts[0].playbook: unknown playbook 'no-such-playbook'",
        "alerts.yaml:7: alerts[1].region: unknown region 'atlantis'",
        "alerts.yaml:10: alerts[2].region.default: unknown region 'venus'",
        "alerts.yaml:10: alerts[2].region.map.Y: unknown region 'mars'",
        "alerts.yaml:12: alerts[2].params.colour: unknown parameter 'colour' of playbook outage (it has: cause)",
        "alerts.yaml:13: alerts[2].params.cause: template does not parse: unexpected end of template, "
        "expected 'end of print statement'.",
        # a rule that fails its own schema does not hide the others' problems
        "alerts.yaml:18: alerts[3].params.cause: give exactly one of 'label' or 'annotation'",
        "alerts.yaml:19: alerts[4].match: Dictionary should have at least 1 item after validation, not 0",
        "alerts.yaml:22: alerts[4]: unknown field 'when'",
    ]


def test_a_required_parameter_without_default_must_be_mapped(tmp_path: Path) -> None:
    root = config_with(tmp_path, "alerts:\n  - {match: {a: b}, playbook: outage, region: hangzhou}\n")
    playbook = root / "playbooks" / "outage.yaml"
    playbook.write_text(playbook.read_text("utf-8").replace("cause: {label: 故障原因, default: 正在排查}",
                                                            "cause: {label: 故障原因}"), "utf-8")
    assert "alerts.yaml:2: alerts[0].playbook: playbook outage needs parameter 'cause' (故障原因), which has no " \
           "default: give it under params" in check_config(root)


# --- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("labels", "source", "annotations", "expected"), [
    # the first rule: label map for the region, a template for the cause
    ({"alertname": "BaseStationDown", "severity": "critical", "city": "NB", "site": "鄞州3号"}, "alertmanager", {},
     Routed(0, "outage", "ningbo", {"cause": "鄞州3号基站退服"}, None, True)),
    # a missing label renders empty: the playbook's default applies later
    ({"alertname": "BaseStationDown", "severity": "major", "city": "HZ"}, "alertmanager", {},
     Routed(0, "outage", "hangzhou", {}, None, True)),
    # city not in the map: the rule gives no region and has no default
    ({"alertname": "BaseStationDown", "severity": "critical", "city": "SH"}, "alertmanager", {},
     Unrouted(Outcome.failed, "alerts.yaml rule 1: label 'city' gives no known region and the rule has no default")),
    # severity warning: the second rule; region straight from a label, cause from an annotation
    ({"alertname": "BaseStationDown", "severity": "warning", "region": "ningbo"}, "alertmanager",
     {"description": "供电中断"}, Routed(1, "outage", "ningbo", {"cause": "供电中断"}, "critical", False)),
    # no region label: the second rule's default
    ({"alertname": "BaseStationDown"}, "alertmanager", {}, Routed(1, "outage", "hangzhou", {}, "critical", False)),
    # the first rule is Alertmanager's only: from PagerDuty the second matches
    ({"alertname": "BaseStationDown", "severity": "critical", "city": "NB"}, "pagerduty", {},
     Routed(1, "outage", "hangzhou", {}, "critical", False)),
    ({"class": "cut", "component": "光缆"}, "pagerduty", {}, Routed(2, "outage", "ningbo", {"cause": "光缆"}, None, False)),
    ({"class": "cut"}, "alertmanager", {}, Unrouted(Outcome.unmapped, "no rule in alerts.yaml matches its labels")),
    ({"alertname": "DiskFull"}, "alertmanager", {}, Unrouted(Outcome.unmapped, "no rule in alerts.yaml matches its labels")),
])
def test_route(rules: Any, labels: dict[str, str], source: str, annotations: dict[str, str],
               expected: Routed | Unrouted) -> None:
    assert decide.route(rules, alarm(labels, source, annotations=annotations)) == expected


# --- the state of one alarm ---------------------------------------------------------------

ROUTED = Routed(0, "outage", "hangzhou", {}, None, True)


def test_a_firing_is_news_once_per_episode() -> None:
    fired = alarm({"alertname": "X", "b": "1", "a": "2"})
    assert decide.fires(None)
    first = decide.attached(None, fired, ROUTED, "INC-1", T0)
    assert (first.revision, first.episode, first.firing, first.incident_id, first.labels) == (
        1, 1, True, "INC-1", "a=2, alertname=X, b=1")
    assert not decide.fires(first)  # a repeat
    unattached = first.model_copy(update={"incident_id": None})
    assert decide.fires(unattached)  # its earlier firing never reached an incident: try again
    retried = decide.attached(unattached, fired, ROUTED, "INC-1", T0)
    assert (retried.revision, retried.episode) == (2, 1)
    gone = decide.cleared(first, T0 + timedelta(minutes=5))
    assert gone is not None and (gone.revision, gone.firing, gone.cleared_at) == (2, False, T0 + timedelta(minutes=5))
    assert decide.cleared(gone, T0) is None and decide.cleared(None, T0) is None
    assert decide.fires(gone)
    again = decide.attached(gone, fired, ROUTED, "INC-2", T0 + timedelta(hours=1))
    assert (again.revision, again.episode, again.firing, again.incident_id, again.cleared_at) == (3, 2, True, "INC-2", None)


def test_an_acknowledgement_is_recorded_once_while_firing() -> None:
    first = decide.attached(None, alarm({"a": "b"}), ROUTED, "INC-1", T0)
    acked = decide.acknowledged(first)
    assert acked is not None and acked.acknowledged and acked.revision == 2
    assert decide.acknowledged(acked) is None
    assert decide.acknowledged(None) is None
    assert decide.acknowledged(decide.cleared(first, T0)) is None


def state(key: str, firing: bool = True, incident: str | None = "INC-1", resolve: bool = True) -> AlarmState:
    return AlarmState(source="alertmanager", key=key, firing=firing, incident_id=incident,
                      resolve_when_cleared=resolve, fired_at=T0)


@pytest.mark.parametrize(("mine", "others", "incident_open", "resolves"), [
    (state("a", False), [state("a", False)], True, True),
    (state("a", False), [state("a", False), state("b", False)], True, True),
    (state("a", False), [state("a", False), state("b", True)], True, False),  # b still firing
    (state("a", False), [state("b", True, incident="INC-2")], True, True),  # b is another incident's
    (state("a", False, resolve=False), [], True, False),  # its rule does not say so
    (state("a", False), [], False, False),  # resolved already
    (state("a", False, incident=None), [], True, False),
])
def test_resolves_incident(mine: AlarmState, others: list[AlarmState], incident_open: bool, resolves: bool) -> None:
    assert decide.resolves_incident(mine, others, incident_open) is resolves


# --- payloads -----------------------------------------------------------------------------

AM = {
    "version": "4", "groupKey": '{}:{alertname="BaseStationDown"}', "truncatedAlerts": 0, "status": "firing",
    "receiver": "coordinator", "groupLabels": {"alertname": "BaseStationDown"},
    "commonLabels": {"alertname": "BaseStationDown", "severity": "critical"},
    "commonAnnotations": {"summary": "基站退服"}, "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "BaseStationDown", "severity": "critical", "city": "NB"},
         "annotations": {"description": "供电中断"}, "startsAt": "2026-11-24T09:52:26.739266876+08:00",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": "1a30ba71cca2921f",
         "silenceURL": "extra fields from other senders are ignored"},
        {"status": "resolved", "labels": {"alertname": "BaseStationDown", "severity": "critical", "city": "HZ"},
         "startsAt": "2026-11-24T09:00:00Z", "endsAt": "2026-11-24T09:50:00Z"},
    ],
}


def test_alertmanager_v4_alerts_are_read() -> None:
    first, second = alertmanager_alarms(AM)
    assert (first.source, first.key, first.action, first.name) == (
        "alertmanager", "1a30ba71cca2921f", AlarmAction.firing, "BaseStationDown")
    assert first.labels["city"] == "NB" and first.annotations == {"summary": "基站退服", "description": "供电中断"}
    assert first.summary == "基站退服" and first.started_at is not None
    assert second.action == AlarmAction.resolved
    assert second.key == fingerprint(second.labels) and len(second.key) == 16  # sent without one


@pytest.mark.parametrize(("change", "problem"), [
    ({"version": "3"}, "version: Input should be '4'"),
    ({"alerts": None}, "alerts: Input should be a valid list"),
    ({"alerts": [{"status": "pending", "labels": {}}]}, "alerts[0].status: Input should be 'firing' or 'resolved'"),
    ({"alerts": [{"status": "firing"}]}, "alerts[0].labels: missing required field"),
    ({"alerts": [{"status": "firing", "labels": {"a": 1}}]}, "alerts[0].labels.a: Input should be a valid string"),
    ({"alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]}, "alerts[0].startsAt: Input should be"),
    ({"alerts": [{"status": "firing", "labels": {}, "fingerprint": ""}]}, "alerts[0].fingerprint: String should have"),
])
def test_a_malformed_alertmanager_payload_names_the_field(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(PayloadInvalid) as raised:
        alertmanager_alarms({**AM, **change})
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_a_missing_version_is_named() -> None:
    with pytest.raises(PayloadInvalid, match="version: missing required field"):
        alertmanager_alarms({k: v for k, v in AM.items() if k != "version"})


PD = {"routing_key": "r" * 32, "event_action": "trigger", "dedup_key": "bts-1",
      "payload": {"summary": "Transmission cut near Yinzhou", "source": "nms-01", "severity": "critical",
                  "timestamp": "2015-07-17T08:42:58.315+0000", "component": "光缆", "group": "ningbo", "class": "cut",
                  "custom_details": {"region": "ningbo", "ring": 7, "nested": {"skipped": True}}}}


def test_a_pagerduty_trigger_is_read() -> None:
    read = pagerduty_alarm(PD)
    assert (read.source, read.key, read.action, read.name) == ("pagerduty", "bts-1", AlarmAction.firing, "cut")
    assert read.labels == {"source": "nms-01", "severity": "critical", "component": "光缆", "group": "ningbo",
                           "class": "cut", "region": "ningbo", "ring": "7"}
    assert read.summary == "Transmission cut near Yinzhou" and read.started_at is not None


def test_pagerduty_without_dedup_key_gets_one_and_resolve_needs_one() -> None:
    first = pagerduty_alarm({k: v for k, v in PD.items() if k != "dedup_key"})
    second = pagerduty_alarm({k: v for k, v in PD.items() if k != "dedup_key"})
    assert first.key != second.key and len(first.key) == 32
    assert pagerduty_alarm({"routing_key": "r", "event_action": "resolve", "dedup_key": "bts-1"}).action == (
        AlarmAction.resolved)
    assert pagerduty_alarm({"routing_key": "r", "event_action": "acknowledge", "dedup_key": "bts-1"}).action == (
        AlarmAction.acknowledged)
    with pytest.raises(PayloadInvalid, match="dedup_key: missing required field"):
        pagerduty_alarm({"routing_key": "r", "event_action": "resolve"})


@pytest.mark.parametrize(("change", "problem"), [
    ({"event_action": "snooze"}, "event_action: Input should be 'trigger', 'acknowledge' or 'resolve'"),
    ({"payload": None}, "payload: missing required field"),
    ({"payload": {**PD["payload"], "severity": "fatal"}}, "payload.severity: Input should be"),
    ({"payload": {**PD["payload"], "summary": ""}}, "payload.summary: String should have at least 1 character"),
    ({"payload": {**PD["payload"], "summary": "x" * 1025}}, "payload.summary: String should have at most 1024"),
    ({"payload": {k: v for k, v in PD["payload"].items() if k != "source"}}, "payload.source: missing required field"),
    ({"payload": {**PD["payload"], "class": 5}}, "payload.class: Input should be a valid string"),
    ({"dedup_key": "k" * 256}, "dedup_key: String should have at most 255"),
])
def test_a_malformed_pagerduty_event_names_the_field(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(PayloadInvalid) as raised:
        pagerduty_alarm({**PD, **change})
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "the body is empty"),
    (b"\xff\xfe", "the body is not UTF-8 text"),
    (b"{", "not JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"a": "\\ud800"}', "a string holds half of a surrogate pair"),
    (b'{"a": NaN}', "not JSON this service reads"),
])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes, problem: str) -> None:
    with pytest.raises(PayloadInvalid) as raised:
        read_body(body)
    assert raised.value.problems[0].startswith(problem), raised.value.problems


def test_a_template_failing_on_an_alarms_values_is_a_failed_alarm(tmp_path: Path) -> None:
    rules = load_catalog(config_with(tmp_path, """\
alerts:
  - match: {alertname: X}
    playbook: outage
    region: hangzhou
    params:
      cause: "{{ 1 / labels.n|int }}"
""")).alerts
    assert decide.route(rules, alarm({"alertname": "X", "n": "4"})) == Routed(0, "outage", "hangzhou",
                                                                           {"cause": "0.25"}, None, False)
    failed = decide.route(rules, alarm({"alertname": "X", "n": "0"}))
    assert isinstance(failed, Unrouted) and failed.outcome == Outcome.failed
    assert "parameter cause: the template failed: ZeroDivisionError" in failed.reason


def test_the_alarm_timeline_kinds_read_in_both_languages() -> None:
    import re

    from coordinator.web.i18n import MESSAGES

    source = (REPO / "coordinator" / "alarms" / "intake.py").read_text("utf-8")
    kinds = set(re.findall(r'_record\([^,]+, "(\w+)"', source))
    assert kinds == {"alarm", "alarm_cleared", "alarm_acknowledged"}
    for kind in kinds:
        zh, en = MESSAGES[f"event.{kind}"]
        assert zh and en and zh != en
