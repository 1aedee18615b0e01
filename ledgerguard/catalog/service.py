"""Load and check the catalog directory: one YAML file per emergency type, rubric.yaml and
filing-calendar.yaml.

``check_catalog`` collects every problem across all files (it never stops at the first bad one);
``load_catalog`` raises :class:`CatalogError` listing them, or returns a :class:`Catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from ledgerguard.calendar import CalendarError, FilingCalendar
from ledgerguard.catalog.models import DERIVED_FACTS, CatalogEntry, DrillPolicy, Rubric
from ledgerguard.expressions import HELPERS

if TYPE_CHECKING:  # imported lazily below: ledgerguard.retention.models imports this package's models
    from ledgerguard.retention.models import RetentionPolicy

__all__ = [
    "RUBRIC_FILE",
    "CALENDAR_FILE",
    "DRILLS_FILE",
    "RETENTION_FILE",
    "Catalog",
    "CatalogError",
    "CatalogProblem",
    "check_catalog",
    "load_catalog",
]

RUBRIC_FILE = "rubric.yaml"
CALENDAR_FILE = "filing-calendar.yaml"
DRILLS_FILE = "drills.yaml"
RETENTION_FILE = "retention.yaml"
PENALTIES_FILE = "penalties.yaml"  # read by ledgerguard.compliance.postmortem (penalty exposure)
_NOT_TYPES = (RUBRIC_FILE, CALENDAR_FILE, DRILLS_FILE, RETENTION_FILE, PENALTIES_FILE)  # the catalog's other *.yaml files


@dataclass(frozen=True)
class CatalogProblem:
    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field or '(file)'}: {self.reason}"


class CatalogError(Exception):
    """The catalog has problems; ``problems`` lists each with its file and dotted field."""

    def __init__(self, problems: list[CatalogProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@dataclass
class Catalog:
    entries: dict[str, CatalogEntry]
    rubric: Rubric
    calendar: FilingCalendar
    directory: Path | None = None
    drills: DrillPolicy | None = None
    retention: "RetentionPolicy | None" = None
    _flows: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._flows = {entry.flow: type_id for type_id, entry in self.entries.items()}

    def get(self, type_id: str) -> CatalogEntry:
        try:
            return self.entries[type_id]
        except KeyError:
            known = ", ".join(sorted(self.entries)) or "none"
            raise KeyError(f"unknown emergency type {type_id!r}; the catalog has: {known}") from None

    def by_flow(self, flow_name: str) -> CatalogEntry:
        try:
            return self.entries[self._flows[flow_name]]
        except KeyError:
            known = ", ".join(sorted(self._flows)) or "none"
            raise KeyError(f"no emergency type has flow {flow_name!r}; flows: {known}") from None

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, type_id: object) -> bool:
        return type_id in self.entries

    def fact_names(self) -> dict[str, str]:
        """Every fact a condition may read, with its description (generic first, then per type)."""
        names = dict(self.rubric.facts)
        for entry in self.entries.values():
            for name, text in entry.facts.items():
                names.setdefault(name, f"[{entry.id}] {text}")
        return names


# --------------------------------------------------------------------------- YAML reading
# libyaml's parser when PyYAML has it: every flow run loads the whole catalog, and the pure-Python
# parser spends about half a second on it, on the path to the first page.
class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """SafeLoader that refuses a key written twice in one mapping (the later would silently win)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, problems: list[CatalogProblem]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(CatalogProblem(path.name, "", f"cannot read: {exc}"))
        return None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(
            str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part
        ) or str(exc)
        kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else "YAML syntax error"
        problems.append(CatalogProblem(path.name, where, f"{kind}: {reason}"))
        return None


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        # routing levels are written as top-level keys of routing: hide the model's "levels"
        if part == "levels" and i > 0 and loc[i - 1] == "routing":
            continue
        parts.append(str(part))
    return ".".join(parts)


def _validation_problems(file: str, exc: ValidationError) -> list[CatalogProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(error.get("loc", ()))
        # a tagged union or a function validator may append the validator's name; keep the data path
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        message = error.get("msg", "invalid")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if error.get("type") == "extra_forbidden":
            message = "unknown field (check the spelling)"
        problems.append(CatalogProblem(file, _dotted(loc), message))
    return problems


def _validate(model: type[BaseModel], file: str, data: Any, problems: list[CatalogProblem]) -> Any:
    if not isinstance(data, dict):
        problems.append(CatalogProblem(file, "", "the file must hold a mapping (key: value lines)"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_validation_problems(file, exc))
        return None


# --------------------------------------------------------------------------- checks
def _template_names(templates_dir: Path | None) -> set[str] | None:
    """Base names of zh-CN templates, or None when there are none yet (then nothing is checked)."""
    if templates_dir is None:
        return None
    zh = templates_dir / "zh-CN"
    if not zh.is_dir():
        return None
    names = {p.name.split(".", 1)[0] for p in zh.iterdir() if p.is_file()}
    return names or None


def _check_entry(
    file: str,
    entry: CatalogEntry,
    *,
    rubric: Rubric | None,
    calendar: FilingCalendar | None,
    templates: set[str] | None,
) -> list[CatalogProblem]:
    problems: list[CatalogProblem] = []
    stem = Path(file).stem
    if entry.id != stem:
        problems.append(CatalogProblem(file, "id", f"id {entry.id!r} must equal the file name {stem!r}"))

    if templates is not None:
        for key, name in entry.templates.names().items():
            if name not in templates:
                problems.append(
                    CatalogProblem(file, f"templates.{key}", f"no template templates/zh-CN/{name}.* exists")
                )

    if entry.deadline.startswith("annual:") and calendar is not None:
        name = entry.deadline[len("annual:"):]
        if name not in calendar.annual:
            problems.append(
                CatalogProblem(
                    file,
                    "deadline",
                    f"unknown annual deadline {name!r}; {CALENDAR_FILE} has: {', '.join(sorted(calendar.annual))}",
                )
            )

    if rubric is not None:
        known = set(rubric.facts) | set(entry.facts) | set(DERIVED_FACTS) | set(HELPERS)
        for i, rule in enumerate(entry.severity.rules):
            _check_names(file, f"severity.rules.{i}.when", rule.condition.names, known, problems)
        for i, obligation in enumerate(entry.obligations):
            _check_names(file, f"obligations.{i}.when", obligation.condition.names, known, problems)
            if obligation.amount_expression is not None:
                _check_names(file, f"obligations.{i}.amount", obligation.amount_expression.names, known, problems)
            base = obligation.deadline.base
            if base.startswith("fact:"):
                _check_names(file, f"obligations.{i}.deadline.base", {base[5:]}, known, problems)
        for i, scenario in enumerate(entry.scenarios):
            _check_names(file, f"scenarios.{i}.facts", set(scenario.facts), known, problems)
        clashes = sorted(set(entry.facts) & set(rubric.facts))
        for name in clashes:
            problems.append(
                CatalogProblem(file, f"facts.{name}", f"{name!r} is already a generic fact in {RUBRIC_FILE}")
            )
    return problems


def _check_names(
    file: str, where: str, names: set[str] | frozenset[str], known: set[str], problems: list[CatalogProblem]
) -> None:
    for name in sorted(set(names) - known):
        problems.append(
            CatalogProblem(
                file,
                where,
                f"unknown fact {name!r}; declare it under facts: in this file or in {RUBRIC_FILE}",
            )
        )


@dataclass
class _Scan:
    problems: list[CatalogProblem]
    entries: dict[str, CatalogEntry]
    rubric: Rubric | None
    calendar: FilingCalendar | None
    drills: DrillPolicy | None = None
    files: dict[str, str] = field(default_factory=dict)  # type id -> the file it came from
    retention: "RetentionPolicy | None" = None


def _scan(directory: Path, templates_dir: Path | None) -> _Scan:
    problems: list[CatalogProblem] = []
    if not directory.is_dir():
        return _Scan([CatalogProblem(str(directory), "", "catalog directory not found")], {}, None, None)

    calendar: FilingCalendar | None = None
    calendar_path = directory / CALENDAR_FILE
    if not calendar_path.is_file():
        problems.append(CatalogProblem(CALENDAR_FILE, "", "missing: the filing calendar is required"))
    else:
        raw = _read_yaml(calendar_path, problems)
        if raw is not None:
            try:
                calendar = FilingCalendar.from_data(raw, source=CALENDAR_FILE)
            except CalendarError as exc:
                problems.append(CatalogProblem(CALENDAR_FILE, "", str(exc).removeprefix(f"{CALENDAR_FILE}: ")))

    rubric: Rubric | None = None
    rubric_path = directory / RUBRIC_FILE
    if not rubric_path.is_file():
        problems.append(CatalogProblem(RUBRIC_FILE, "", "missing: the severity rubric is required"))
    else:
        raw = _read_yaml(rubric_path, problems)
        if raw is not None:
            rubric = _validate(Rubric, RUBRIC_FILE, raw, problems)
        if rubric is not None:
            known = set(rubric.facts) | set(DERIVED_FACTS)
            missing_derived = sorted(set(DERIVED_FACTS) - set(rubric.facts))
            for name in missing_derived:
                problems.append(CatalogProblem(RUBRIC_FILE, "facts", f"derived fact {name!r} is not documented"))
            for label, items in (("rules", rubric.rules), ("grade_rules", rubric.grade_rules),
                                 ("obligations", rubric.obligations)):
                for i, item in enumerate(items):
                    _check_names(RUBRIC_FILE, f"{label}.{i}.when", item.condition.names, known, problems)
            _check_names(RUBRIC_FILE, "vip.when", rubric.vip.condition.names, known, problems)

    drills: DrillPolicy | None = None
    drills_path = directory / DRILLS_FILE
    if not drills_path.is_file():
        problems.append(CatalogProblem(DRILLS_FILE, "", "missing: drill scoring and schedules are required"))
    else:
        raw = _read_yaml(drills_path, problems)
        if raw is not None:
            drills = _validate(DrillPolicy, DRILLS_FILE, raw, problems)

    from ledgerguard.retention.models import RetentionPolicy

    retention: RetentionPolicy | None = None
    retention_path = directory / RETENTION_FILE
    if not retention_path.is_file():
        problems.append(CatalogProblem(RETENTION_FILE, "", "missing: the retention periods (保管期限) are required"))
    else:
        raw = _read_yaml(retention_path, problems)
        if raw is not None:
            retention = _validate(RetentionPolicy, RETENTION_FILE, raw, problems)

    templates = _template_names(templates_dir)
    entries: dict[str, CatalogEntry] = {}
    files: dict[str, str] = {}
    flows: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.name in _NOT_TYPES or path.name.startswith("."):
            continue
        if path.suffix == ".yml":
            problems.append(CatalogProblem(path.name, "", "use the .yaml extension; this file is ignored"))
            continue
        if path.suffix != ".yaml" or not path.is_file():
            continue
        raw = _read_yaml(path, problems)
        if raw is None:
            continue
        entry = _validate(CatalogEntry, path.name, raw, problems)
        if entry is None:
            continue
        problems.extend(_check_entry(path.name, entry, rubric=rubric, calendar=calendar, templates=templates))
        if entry.id in entries:
            problems.append(CatalogProblem(path.name, "id", f"id {entry.id!r} is already used by another file"))
            continue
        if entry.flow in flows:
            problems.append(
                CatalogProblem(path.name, "flow", f"flow {entry.flow!r} is already used by {flows[entry.flow]}")
            )
            continue
        flows[entry.flow] = path.name
        entries[entry.id] = entry
        files[entry.id] = path.name
    if not entries and not any(p.file.endswith(".yaml") and p.file not in _NOT_TYPES for p in problems):
        problems.append(CatalogProblem(str(directory), "", "no emergency types (*.yaml) found"))
    if drills is not None:
        for i, type_id in enumerate(drills.rotation):
            if entries and type_id not in entries:
                problems.append(CatalogProblem(DRILLS_FILE, f"rotation.{i}", f"unknown emergency type {type_id!r}"))
        known_roles = set(rubric.roles) if rubric is not None else None
        for i, role in enumerate(drills.improvement_owner_roles):
            if known_roles is not None and role not in known_roles:
                problems.append(CatalogProblem(DRILLS_FILE, f"improvement_owner_roles.{i}", f"unknown role {role!r}"))
    if retention is not None:
        # every type's records must map to kinds: an unmapped one could be a 30-year record
        for where, reason in retention.problems({type_id: entry.records for type_id, entry in entries.items()}):
            problems.append(CatalogProblem(RETENTION_FILE, where, reason))
    return _Scan(problems, entries, rubric, calendar, drills, files, retention)


def _default_dirs(directory: Path | None, templates_dir: Path | None) -> tuple[Path, Path | None]:
    if directory is None or templates_dir is None:
        from ledgerguard.config import get_settings

        settings = get_settings()
        directory = directory or settings.catalog_dir
        templates_dir = templates_dir or settings.templates_dir
    return Path(directory), templates_dir


def check_catalog(directory: Path | None = None, *, templates_dir: Path | None = None) -> list[CatalogProblem]:
    """Every problem in the catalog directory (all files, all fields); empty when it is sound."""
    directory, templates_dir = _default_dirs(directory, templates_dir)
    scan = _scan(directory, templates_dir)
    blamed = {p.file for p in scan.problems}
    sound = {type_id: entry for type_id, entry in scan.entries.items() if scan.files[type_id] not in blamed}
    return scan.problems + _drill_problems(sound) + _penalty_problems(directory, scan)


def _penalty_problems(directory: Path, scan) -> list[CatalogProblem]:
    """penalties.yaml parses, and each of its obligation ids is one a type or the rubric declares."""
    from ledgerguard.compliance.postmortem import PostmortemError, load_penalties

    try:
        rules = load_penalties(directory)
    except PostmortemError as exc:
        return [CatalogProblem(PENALTIES_FILE, "", str(exc).split(": ", 1)[-1])]
    if scan.problems:  # a broken type file's obligations are unknown: no guess about what it declares
        return []
    declared = {o.id for entry in scan.entries.values() for o in entry.obligations}
    if scan.rubric is not None:
        declared |= {o.id for o in scan.rubric.obligations}
    return [CatalogProblem(PENALTIES_FILE, obligation_id, "no catalog type or rubric.yaml declares this obligation")
            for obligation_id in sorted(set(rules) - declared)]


def _drill_problems(entries: dict[str, CatalogEntry]) -> list[CatalogProblem]:
    """Each drill's injectors exist and break the type they drill (checked by `ledgerguard check`,
    not on every load: it imports every detector module). A file with problems already is left
    to those (the caller passes only sound files): its id may not even be its type's."""
    from ledgerguard.detectors import get_injector

    problems = []
    for entry in entries.values():
        for i, scenario in enumerate(entry.scenarios):
            for j, step in enumerate(scenario.drill.inject if scenario.drill else []):
                where = f"scenarios.{i}.drill.inject.{j}.injector"
                try:
                    injector = get_injector(step.injector)
                except KeyError as exc:
                    problems.append(CatalogProblem(f"{entry.id}.yaml", where, exc.args[0]))
                    continue
                if injector.emergency_type != entry.id:
                    problems.append(CatalogProblem(f"{entry.id}.yaml", where, f"{step.injector!r} breaks "
                                                   f"{injector.emergency_type}, not {entry.id}"))
    return problems


def load_catalog(directory: Path | None = None, *, templates_dir: Path | None = None) -> Catalog:
    """Load the catalog (default: settings.catalog_dir); raise :class:`CatalogError` on any problem."""
    directory, templates_dir = _default_dirs(directory, templates_dir)
    scan = _scan(directory, templates_dir)
    if scan.problems or scan.rubric is None or scan.calendar is None:
        raise CatalogError(scan.problems)
    return Catalog(entries=scan.entries, rubric=scan.rubric, calendar=scan.calendar, directory=directory,
                   drills=scan.drills, retention=scan.retention)
