"""Official script versions rendered from the shipped templates: identical texts give
identical hashes, a new wording names the one it replaces, drills are marked, missing
parameters show as placeholders and force approval, HTML is escaped."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from coordinator.config.catalog import Catalog
from coordinator.models import Incident, ScriptKind
from coordinator.scripts import placeholder
from coordinator.wording import compose, needs_approval, sent_at_once


T0 = datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)
TZ = ZoneInfo("Asia/Shanghai")



def incident(catalog: Catalog, playbook_id: str, drill: bool = False) -> Incident:
    pb = catalog.playbooks[playbook_id]
    return Incident(id="INC-20261124-abc123", playbook=pb.id, title=pb.title, severity="major",
                    category=pb.trigger.categories[0], region="ningbo", opened_at=T0, opened_by="p",
                    updated_at=T0, drill=drill)


def examples(catalog: Catalog, playbook_id: str) -> dict[str, str]:
    return {k: p.example or p.default or "" for k, p in catalog.playbooks[playbook_id].script.params.items()}


def make(catalog: Catalog, inc: Incident, kind: ScriptKind = ScriptKind.script, params: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    pb = catalog.playbooks[inc.playbook]
    return compose(catalog.templates, pb, inc, kind=kind, params=examples(catalog, pb.id) if params is None else params,
                   author="chen-li", now=T0, tz=TZ, region_name="宁波", category_name="宽带故障")


@pytest.mark.parametrize("playbook_id", ["mobile-outage", "broadband-outage", "billing-error", "vas-dispute",
                                         "network-quality"])
def test_every_shipped_playbook_renders(catalog: Catalog, playbook_id: str) -> None:
    inc = incident(catalog, playbook_id)
    v1 = make(catalog, inc)
    assert v1.version == 1 and v1.supersedes is None and not v1.missing
    assert v1.sms_encoding == "UCS-2" and 1 <= v1.sms_segments <= 3, (v1.sms_segments, v1.sms)
    assert "v1" in v1.sms and "请回复1确认" in v1.sms and "【演练】" not in v1.sms
    assert v1.email_html.lstrip().lower().startswith(("<!doctype html", "<html"))
    assert v1.email_subject and "\n" not in v1.email_subject and "INC-20261124-abc123" in v1.email_text
    for kind in (ScriptKind.update, ScriptKind.stand_down):
        assert make(catalog, inc, kind).sms


def test_same_inputs_same_hash_and_a_new_version_supersedes(catalog: Catalog) -> None:
    inc = incident(catalog, "broadband-outage")
    v1 = make(catalog, inc)
    assert make(catalog, inc).content_hash == v1.content_hash
    approved = v1.model_copy(update={"approved_by": "chen-li", "approved_at": T0})
    inc2 = inc.model_copy(update={"scripts": [approved]})
    v2 = make(catalog, inc2, params=examples(catalog, "broadband-outage") | {"cause": "光缆被挖断"})
    assert (v2.version, v2.supersedes) == (2, 1)
    assert "此口径替代v1" in v2.sms and "v1" in v2.email_text
    assert v2.content_hash != v1.content_hash
    stand_down = make(catalog, inc2, ScriptKind.stand_down)
    assert stand_down.version == 2 and stand_down.supersedes is None and "v1" in stand_down.sms


def test_drill_messages_are_marked(catalog: Catalog) -> None:
    version = make(catalog, incident(catalog, "mobile-outage", drill=True))
    assert version.sms.startswith("【演练】")
    assert "演练" in version.email_subject


def test_missing_parameters_show_and_force_approval(catalog: Catalog) -> None:
    inc = incident(catalog, "billing-error")
    version = make(catalog, inc, params={})
    assert set(version.missing) == {"billing_item", "error_period"}
    assert placeholder("差错项目") in version.sms
    pb = catalog.playbooks["billing-error"]
    assert needs_approval(pb, version)
    outage = catalog.playbooks["broadband-outage"]
    assert outage.script.approval == "auto"
    assert not needs_approval(outage, make(catalog, incident(catalog, "broadband-outage")))


@pytest.mark.parametrize(("approval", "kind", "missing", "sent"), [
    ("auto", ScriptKind.script, [], True),
    ("auto", ScriptKind.script, ["cause"], False),
    ("leader", ScriptKind.script, [], False),
    ("leader", ScriptKind.update, [], True),  # updates and the stand-down follow approved wording
    ("leader", ScriptKind.stand_down, [], True),
    ("auto", ScriptKind.update, ["cause"], False),  # never a placeholder to the frontline
])
def test_what_goes_out_without_approval(catalog: Catalog, approval: str, kind: ScriptKind, missing: list[str],
                                        sent: bool) -> None:
    base = catalog.playbooks["broadband-outage"]
    playbook = base.model_copy(update={"script": base.script.model_copy(update={"approval": approval})})
    version = make(catalog, incident(catalog, "broadband-outage")).model_copy(update={"kind": kind, "missing": missing})
    assert sent_at_once(playbook, version) is sent


def test_html_is_escaped_and_text_is_not(catalog: Catalog) -> None:
    inc = incident(catalog, "broadband-outage")
    version = make(catalog, inc, params=examples(catalog, "broadband-outage") | {"cause": "<b>断电</b> & 抢修"})
    assert "&lt;b&gt;断电&lt;/b&gt; &amp; 抢修" in version.email_html
    assert "<b>断电</b> & 抢修" in version.email_text and "<b>断电</b>" in version.sms
