"""Network alarms in: Alertmanager and PagerDuty bodies read (payloads), mapped to a
playbook and decided purely (decisions), carried out through the pipeline (intake)."""
