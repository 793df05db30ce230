"""Just enough of a PromQL lexer to say which metrics and labels an expression uses.

Not a parser: it finds the series selectors (``name{label="value", …}`` or a bare
``name``), the label names of grouping clauses (``by``/``without``/``on``/
``ignoring``/``group_left``/``group_right``), and skips everything else: function
and aggregation names (an identifier followed by ``(``, or an aggregation followed
by ``by``/``without``), keywords, numbers and durations, ranges ``[5m]``, strings,
and Grafana variables (``$flow``, ``${flow}``, ``$__rate_interval``).

Grafana's ``label_values(selector, label)`` is not PromQL: see
:func:`parse_label_values`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
GROUPING = frozenset(["by", "without", "on", "ignoring", "group_left", "group_right"])
KEYWORDS = frozenset(["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"]) | GROUPING

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$(?:\{[^}]*\}|\w+))
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)(?:[a-zA-Z]\w*)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<matchop>=~|!~|!=|=)
  | (?P<punct>[{}()\[\],@])
  | (?P<op>==|<=|>=|[-+*/%^<>])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str  # unquoted; may contain Grafana variables

    @property
    def templated(self) -> bool:
        return "$" in self.value


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...]


@dataclass
class Uses:
    selectors: list[Selector] = field(default_factory=list)
    grouping_labels: set[str] = field(default_factory=set)

    @property
    def metrics(self) -> set[str]:
        return {s.metric for s in self.selectors}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def tokens(expr: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        pos = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind not in ("space", "comment"):
            out.append(_Token(kind, match.group()))
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    if text[0] == "`":
        return body
    return re.sub(r"\\(.)", r"\1", body)


def _matchers(toks: list[_Token], start: int) -> tuple[tuple[Matcher, ...], int]:
    """The matchers of the ``{…}`` opening at ``start``, and the index after ``}``."""
    found: list[Matcher] = []
    i = start + 1
    while toks[i].text != "}":
        if toks[i].text == ",":
            i += 1
            continue
        label, op, value = toks[i], toks[i + 1], toks[i + 2]
        if label.kind != "ident" or op.kind != "matchop" or value.kind != "string":
            raise ValueError(f"unexpected label matcher {label.text}{op.text}{value.text}")
        found.append(Matcher(label.text, op.text, _unquote(value.text)))
        i += 3
    return tuple(found), i + 1


def uses(expr: str) -> Uses:
    """The series selectors and grouping labels of a PromQL expression."""
    toks = tokens(expr)
    result = Uses()
    i = 0
    while i < len(toks):
        tok = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if tok.text == "[":  # range or subquery duration
            while toks[i].text != "]":
                i += 1
            i += 1
            continue
        if tok.text == "{":  # a selector without a metric name
            matchers, i = _matchers(toks, i)
            result.selectors.append(Selector("", matchers))
            continue
        if tok.kind != "ident":
            i += 1
            continue
        name = tok.text
        if name in GROUPING and nxt is not None and nxt.text == "(":
            i += 2
            while toks[i].text != ")":
                if toks[i].kind == "ident":
                    result.grouping_labels.add(toks[i].text)
                i += 1
            i += 1
            continue
        if name.lower() in KEYWORDS or name in AGGREGATIONS:
            i += 1
            continue
        if nxt is not None and nxt.text == "(":  # a function call
            i += 1
            continue
        if nxt is not None and nxt.text == "{":
            matchers, i = _matchers(toks, i + 1)
            result.selectors.append(Selector(name, matchers))
            continue
        result.selectors.append(Selector(name, ()))
        i += 1
    return result


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.*),\s*)?(?P<label>\w+)\s*\)\s*$")


def parse_label_values(query: str) -> tuple[str | None, str]:
    """``label_values(selector, label)`` → (selector, label); selector may be absent."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return match.group("selector"), match.group("label")
