"""Safe conditions over facts, as written in the catalog (``clients_affected >= 10 or pii_leaked``).

Conditions are Jinja2 expressions compiled in a sandbox — never ``eval``. A fact that is not in
the dict is *undefined*: it is falsy, ``x is defined`` works, and comparing or doing arithmetic
with it yields false/undefined instead of raising. So ``backup_age_hours > rpo_hours`` is simply
false when the backup age is unknown. A fact given as ``None`` counts as unknown too.

Helpers available inside every condition:

* ``grade('较大')`` → the rank of a regulatory grade (一般 0, 较大 1, 重大 2, 特别重大 3; English
  names work too), to compare with the ``grade_rank`` fact: ``grade_rank >= grade('较大')``.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from jinja2 import ChainableUndefined, TemplateError, nodes
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from ledgerguard.models import RegulatoryGrade

__all__ = ["Condition", "ExpressionError", "compile_condition", "grade_rank", "HELPERS"]


class ExpressionError(ValueError):
    """A condition could not be compiled or evaluated; ``reason`` says why."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"{reason} in condition {expression!r}")


def grade_rank(name: Any) -> int:
    """Rank of a regulatory grade given by its Chinese or English name (一般 → 0 … 特别重大 → 3)."""
    if isinstance(name, RegulatoryGrade):
        return name.rank
    text = str(name).strip()
    for grade in RegulatoryGrade:
        if text in (grade.value, grade.en, grade.name.lower(), grade.name):
            return grade.rank
    known = ", ".join(f"{g.value}/{g.en}" for g in RegulatoryGrade)
    raise ValueError(f"unknown regulatory grade {name!r}; known: {known}")


HELPERS: dict[str, Callable[..., Any]] = {"grade": grade_rank}


def _false(self: Any, other: Any) -> bool:  # noqa: ARG001
    return False


def _same(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG001
    return self


class FactUndefined(ChainableUndefined):
    """An unknown fact: falsy, comparisons are false, arithmetic stays undefined, attributes chain."""

    __slots__ = ()

    __lt__ = __le__ = __gt__ = __ge__ = _false
    __add__ = __radd__ = __sub__ = __rsub__ = _same
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _same
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = _same
    __neg__ = __pos__ = _same

    def __contains__(self, item: Any) -> bool:
        return False


_MAX_POWER = 1_000
_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "if", "else", "elif", "for", "recursive"})


class _ConditionEnvironment(SandboxedEnvironment):
    """Sandbox with unknown facts lenient and ``**`` bounded (no ``10 ** 10 ** 10``)."""

    intercepted_binops = frozenset({"**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > _MAX_POWER:
                raise ValueError(f"exponent {right} is too large")
            return operator.pow(left, right)
        return super().call_binop(context, operator_name, left, right)


_ENV = _ConditionEnvironment(undefined=FactUndefined)


@dataclass(frozen=True)
class Condition:
    """A compiled condition. ``evaluate(facts)`` → bool; ``names`` are the facts it reads."""

    text: str
    names: frozenset[str] = field(default_factory=frozenset)
    _fn: Any = field(default=None, repr=False, compare=False)

    def evaluate(self, facts: Mapping[str, Any]) -> bool:
        """True when the condition holds for ``facts``.

        Unknown facts never raise. A genuine type error (e.g. comparing the text ``"ten"`` with a
        number) raises :class:`ExpressionError` naming the condition.
        """
        return bool(self.value(facts))

    __call__ = evaluate

    def value(self, facts: Mapping[str, Any]) -> Any:
        """The expression's value for ``facts`` (an amount, a count…); None when it reads an
        unknown fact. Raises :class:`ExpressionError` like :meth:`evaluate`."""
        # a fact whose value is None is unknown: treat it exactly like a missing one
        context = {**HELPERS, **{k: v for k, v in dict(facts).items() if v is not None}}
        try:
            value = self._fn(**context)
        except Exception as exc:  # sandbox violations, TypeErrors on bad fact types…
            raise ExpressionError(self.text, f"{type(exc).__name__}: {exc}") from exc
        return None if isinstance(value, FactUndefined) else value


def compile_condition(text: str) -> Condition:
    """Compile ``text`` into a :class:`Condition`; raise :class:`ExpressionError` with the reason."""
    if not isinstance(text, str):
        raise ExpressionError(str(text), f"a condition must be text, not {type(text).__name__}")
    if not text.strip():
        raise ExpressionError(text, "empty condition")
    try:
        fn = _ENV.compile_expression(text, undefined_to_none=False)
        node = Parser(_ENV, text, state="variable").parse_expression()
    except TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) and exc.lineno > 1 else ""
        raise ExpressionError(text, f"syntax error{line}: {exc.message or exc}") from exc
    # find_all walks the descendants only: a condition that is one bare name is its own root
    found = [node, *node.find_all(nodes.Name)] if isinstance(node, nodes.Name) else node.find_all(nodes.Name)
    names = frozenset(n.name for n in found if n.ctx == "load" and n.name not in HELPERS)
    keywords = sorted(names & _KEYWORDS)
    if keywords:
        # Jinja reads a dangling keyword ("a and and") as a variable; treat it as the typo it is
        raise ExpressionError(text, f"syntax error: {keywords[0]!r} is a keyword, not a fact name")
    return Condition(text=text, names=names, _fn=fn)
