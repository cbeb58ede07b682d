"""alerts.yaml: which network alarm opens which playbook's incident, in which region,
with which parameters. Optional; read with the rest of the config, checked by
`coordinator check` (unknown playbook, region or parameter, a parameter the playbook
needs and nobody gives, a template that does not parse: `alerts.yaml:LINE: message`)
and swapped in by a reload with the catalog. The format, with an example, is in
docs/config.md ("alerts.yaml"); the alarms themselves: coordinator/alarms/.

    alerts:
      - match: {alertname: BaseStationDown, severity: [critical, major]}
        source: alertmanager                  # optional: alertmanager | pagerduty (default both)
        playbook: mobile-outage
        region: {label: city, map: {NB: ningbo, HZ: hangzhou}, default: hangzhou}  # or: region: ningbo
        params:
          affected_area: "{{ labels.site }}周边"   # a template over labels, annotations, summary
          cause: {annotation: description}         # or one label / annotation as it is
        severity: critical                    # optional; default: the playbook's
        resolve_when_cleared: true            # resolve once every alarm on the incident cleared
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from jinja2 import TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import Discriminator, Field, Tag, model_validator

from ..models import ALL_REGIONS
from .crosschecks import Entry
from .schemas import Id, Severity, Strict
from .yamlsource import Reader

ALERTS_FILE = "alerts.yaml"
SOURCES = ("alertmanager", "pagerduty")


class RegionFrom(Strict):
    """The region from a label's value, through `map` when given (else the value itself)."""

    label: str = Field(min_length=1)
    map: dict[str, Id] = {}
    # When the label is missing, or its value is not in `map`; omitted: the alarm is not carried out.
    default: Id | None = None


class ParamFrom(Strict):
    """A parameter taken as it is from one label or one annotation."""

    label: str | None = None
    annotation: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "ParamFrom":
        if (self.label is None) == (self.annotation is None):
            raise ValueError("give exactly one of 'label' or 'annotation'")
        return self


def _shape(value: Any) -> str:
    return "from" if isinstance(value, dict) else "text"


# A string, or a mapping read as the model: a problem is reported for the one meant only.
RegionSpec = Annotated[Union[Annotated[Id, Tag("text")], Annotated[RegionFrom, Tag("from")]], Discriminator(_shape)]
ParamSpec = Annotated[Union[Annotated[str, Tag("text")], Annotated[ParamFrom, Tag("from")]], Discriminator(_shape)]


class AlertRule(Strict):
    match: dict[str, Union[str, list[str]]] = Field(min_length=1)
    source: Literal["alertmanager", "pagerduty"] | None = None
    playbook: Id
    region: RegionSpec
    params: dict[Id, ParamSpec] = {}
    severity: Severity | None = None
    resolve_when_cleared: bool = False

    def matches(self, source: str, labels: dict[str, str]) -> bool:
        if self.source is not None and self.source != source:
            return False
        for name, wanted in self.match.items():
            value = labels.get(name)
            if value is None or value not in ([wanted] if isinstance(wanted, str) else wanted):
                return False
        return True


class AlertsFile(Strict):
    # Checked item by item (load_alerts), so that one bad rule does not hide the others' problems.
    alerts: list[Any] = []


# Parameter templates see the alarm, never the service: sandboxed, a missing label reads as "".
_ENV = ImmutableSandboxedEnvironment(autoescape=False)


@dataclass(frozen=True)
class AlarmRules:
    """The checked rules, in file order (the first that matches an alarm wins)."""

    rules: tuple[AlertRule, ...] = ()
    # The parameter templates, compiled once: (rule index, parameter) -> template.
    templates: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)

    def first(self, source: str, labels: dict[str, str]) -> tuple[int, AlertRule] | None:
        for index, rule in enumerate(self.rules):
            if rule.matches(source, labels):
                return index, rule
        return None


def load_alerts(builder: Reader, playbooks: dict[str, Entry], regions: dict[str, Entry]) -> AlarmRules:
    """alerts.yaml under the builder's root, schema-checked, then each rule against the
    playbooks and regions; problems go to the builder's list, with the line they stand on."""
    path = builder.root / ALERTS_FILE
    if not path.is_file():
        return AlarmRules()
    doc = builder.read(path)
    parsed = builder.validate(AlertsFile, doc.data, doc) if doc is not None else None
    if doc is None or parsed is None:
        return AlarmRules()
    templates: dict[tuple[int, str], Any] = {}
    rules: list[AlertRule] = []
    for i, raw in enumerate(parsed.alerts):
        rule = builder.validate(AlertRule, raw, doc, ("alerts", i))
        if rule is None:
            continue  # reported; with any problem there is no catalog, so the indexes below stay true
        rules.append(rule)
        here = Entry(rule, doc, ("alerts", i))
        entry = playbooks.get(rule.playbook)
        if entry is None:
            if rule.playbook not in builder.broken:
                builder.problems.append(here.at(("playbook",), f"unknown playbook '{rule.playbook}'"))
            continue
        for loc, region in _regions(rule):
            if region != ALL_REGIONS and region not in regions and region not in builder.broken:
                builder.problems.append(here.at(loc, f"unknown region '{region}'"))
        declared = entry.model.script.params
        for name, spec in rule.params.items():
            if name not in declared:
                known = ", ".join(sorted(declared)) or "none"
                builder.problems.append(here.at(("params", name), f"unknown parameter '{name}' of playbook "
                                                                  f"{rule.playbook} (it has: {known})"))
            elif isinstance(spec, str):
                try:
                    templates[i, name] = _ENV.from_string(spec)
                except TemplateSyntaxError as exc:
                    builder.problems.append(here.at(("params", name), f"template does not parse: {exc.message}"))
        for name, param in declared.items():
            if param.required and param.default is None and name not in rule.params:
                builder.problems.append(here.at(("playbook",), f"playbook {rule.playbook} needs parameter "
                                                               f"'{name}' ({param.label}), which has no default: "
                                                               "give it under params"))
    return AlarmRules(tuple(rules), templates)


def _regions(rule: AlertRule) -> list[tuple[tuple[str | int, ...], str]]:
    """Every region a rule can name, with where it stands."""
    if isinstance(rule.region, str):
        return [(("region",), rule.region)]
    named: list[tuple[tuple[str | int, ...], str]] = [(("region", "map", k), v) for k, v in rule.region.map.items()]
    if rule.region.default is not None:
        named.append((("region", "default"), rule.region.default))
    return named
