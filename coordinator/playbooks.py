"""Choosing and applying a playbook, pure: which playbook a surge triggers, how severe
the incident is, and the parameters its script gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .errors import ParamsInvalid
from .models import ALL_REGIONS, Surge
from .config.schemas import Playbook, SeverityPolicy

SEVERITY_ORDER = ("minor", "major", "critical")
SEVERITY_LABELS = {"minor": "一般", "major": "较大", "critical": "重大"}


@dataclass(frozen=True)
class Match:
    playbook: Playbook | None
    # Why no playbook was chosen, for the surge's record.
    reason: str = ""


def match_playbook(playbooks: Iterable[Playbook], surge: Surge) -> Match:
    """The playbook whose trigger covers the surge's category and region and whose
    minimum count and ratio it meets; the most specific wins (a region list over any
    region, then fewer categories, then the id). A category-wide surge (`region *`)
    matches only playbooks for any region."""
    covering = [
        p
        for p in playbooks
        if surge.category in p.trigger.categories
        and (p.trigger.regions is None or (surge.region != ALL_REGIONS and surge.region in p.trigger.regions))
    ]
    if not covering:
        return Match(None, f"no playbook covers {surge.key}")
    meeting = [
        p for p in covering if surge.observed >= p.trigger.min_count and surge.ratio >= p.trigger.min_ratio
    ]
    if not meeting:
        needs = ", ".join(f"{p.id} needs count >= {p.trigger.min_count} and ratio >= {p.trigger.min_ratio:g}"
                          for p in covering)
        return Match(None, f"below every trigger (count {surge.observed}, ratio {surge.ratio:.1f}; {needs})")
    meeting.sort(key=lambda p: (p.trigger.regions is None, len(p.trigger.categories), p.id))
    return Match(meeting[0])


def severity_for(policy: SeverityPolicy, surge: Surge | None) -> str:
    """The highest level among the default and every rule the surge meets."""
    level = policy.default
    if surge is None:
        return level
    for rule in policy.rules:
        met = (
            (rule.ratio_at_least is None or surge.ratio >= rule.ratio_at_least)
            and (rule.count_at_least is None or surge.observed >= rule.count_at_least)
            and (rule.regulator_at_least is None or surge.regulator >= rule.regulator_at_least)
        )
        if met and SEVERITY_ORDER.index(rule.level) > SEVERITY_ORDER.index(level):
            level = rule.level
    return level


def script_params(playbook: Playbook, given: dict[str, object]) -> dict[str, str]:
    """The playbook's parameters filled from `given` and the defaults; raises ParamsInvalid
    naming each unknown or missing one."""
    problems = [f"unknown parameter '{k}'" for k in given if k not in playbook.script.params]
    out: dict[str, str] = {}
    for name, param in playbook.script.params.items():
        value = given.get(name)
        if value is None or str(value).strip() == "":
            if param.default is not None:
                out[name] = param.default
            elif param.required:
                problems.append(f"missing parameter '{name}' ({param.label})")
            else:
                out[name] = ""
        else:
            out[name] = str(value).strip()
    if problems:
        raise ParamsInvalid(playbook.id, problems)
    return out
