"""Freeze an incident's escalation chain and answer what each round does.

A chain (rubric.yaml ``escalation:``, or the type's own ``escalation:``) is flattened into
*rounds*: round 0 is the first notification (sent by the notify stage), round k > 0 goes out when
round k-1's wait passed without an acknowledgement. After the last round's wait the chain is
exhausted: the miss is recorded. Everything a round needs — the roles (``routing`` resolved to
the level's roles) and the waits — is copied into ``incidents.frozen_escalation`` when the
incident is first graded at a level, and read back from there only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from ledgerguard.models import Stage
from ledgerguard.register import service as register
from ledgerguard.register.models import as_utc, utcnow

__all__ = ["Round", "chain_source", "current_chain", "freeze_chain", "plan_rounds", "round_at"]


@dataclass(frozen=True)
class Round:
    index: int          # 0 = the first notification
    step: int           # 1-based step of the chain
    repeat: int         # 1-based repetition of that step
    roles: tuple[str, ...]
    wait_minutes: float  # how long this round waits for an acknowledgement

    def as_dict(self) -> dict:
        return {"round": self.index, "step": self.step, "repeat": self.repeat, "roles": list(self.roles),
                "wait_minutes": self.wait_minutes}

    @classmethod
    def from_dict(cls, data: dict) -> "Round":
        return cls(index=int(data["round"]), step=int(data["step"]), repeat=int(data["repeat"]),
                   roles=tuple(data["roles"]), wait_minutes=float(data["wait_minutes"]))


def chain_source(*, entry, level: int) -> str:
    return f"{entry.id}.yaml" if int(level) in entry.escalation else "rubric.yaml"


def _ack_minutes(*, entry, rubric, level: int) -> float:
    override = entry.sla.levels.get(int(level))
    if override is not None and override.ack_minutes:
        return float(override.ack_minutes)
    return float(rubric.sla[int(level)].ack_minutes)


def plan_rounds(*, entry, rubric, level: int) -> list[Round]:
    """The rounds of the chain that applies to ``entry`` at ``level``, as configured now."""
    level = int(level)
    steps = entry.escalation.get(level) or rubric.escalation[level]
    default_wait = _ack_minutes(entry=entry, rubric=rubric, level=level)
    rounds: list[Round] = []
    for number, step in enumerate(steps, start=1):
        roles = tuple(entry.roles_for(level) if step.notify == "routing" else step.notify)
        for repeat in range(1, step.repeat + 1):
            rounds.append(Round(index=len(rounds), step=number, repeat=repeat, roles=roles,
                                wait_minutes=float(step.wait_minutes or default_wait)))
    return rounds


def freeze_chain(*, db_session: Session, incident_id: str, entry, rubric, level: int,
                 flow_run_id: str | None = None, now: datetime | None = None) -> tuple[list[Round], bool]:
    """The incident's frozen chain for ``level``: frozen now from the config if it has none for
    that level yet (``(rounds, True)``), else the copy frozen earlier (``(rounds, False)``).

    A more severe level later gets its own chain, frozen then (a re-grade is not a config edit);
    the incident's ``current_level`` is the most severe level frozen so far.
    """
    incident = register.get_incident(db_session=db_session, incident_id=incident_id)
    frozen = dict(incident.frozen_escalation or {})
    chains = dict(frozen.get("chains") or {})
    key = str(int(level))
    current = frozen.get("current_level")
    if key in chains:
        return [Round.from_dict(r) for r in chains[key]["rounds"]], False
    rounds = plan_rounds(entry=entry, rubric=rubric, level=level)
    at = as_utc(now) if now else utcnow()
    chains[key] = {"level": int(level), "frozen_at": at.isoformat(), "source": chain_source(entry=entry, level=level),
                   "rounds": [r.as_dict() for r in rounds]}
    frozen["chains"] = chains
    if current is None or int(level) < int(current):
        frozen["current_level"] = int(level)
    incident.frozen_escalation = frozen  # a new dict: SQLAlchemy sees the change
    db_session.flush()
    summary = "; ".join(f"{r.index}: {'+'.join(r.roles)} then wait {r.wait_minutes:g} min" for r in rounds)
    register.append_timeline(
        db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="escalation.frozen",
        message=f"escalation chain for level {level} frozen from {chains[key]['source']}: {summary}",
        data={"level": int(level), "rounds": [r.as_dict() for r in rounds]}, flow_run_id=flow_run_id)
    return rounds, True


def current_chain(incident) -> tuple[int | None, list[Round]]:
    """The level whose chain runs now (the most severe frozen) and its rounds."""
    frozen = incident.frozen_escalation or {}
    level = frozen.get("current_level")
    if level is None:
        return None, []
    return int(level), [Round.from_dict(r) for r in frozen["chains"][str(level)]["rounds"]]


def round_at(rounds: list[Round], index: int) -> Round | None:
    return rounds[index] if 0 <= index < len(rounds) else None
