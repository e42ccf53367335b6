"""A small PromQL check for the chart's queries: the metric names an expression selects, and its syntax.

No well-kept PromQL parser exists for Python, so `check` is a careful minimal one: it tokenizes the whole
expression (refusing any character PromQL has no use for), nests (), [] and {} properly, accepts only known
functions, aggregations and operators, parses every label matcher and compiles its regular expression,
and reads every range as a duration (or a Grafana interval variable). Precedence and types are not checked.
"""

from __future__ import annotations

import re

__all__ = ["FUNCTIONS", "check", "metric_names"]

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}  # fmt: skip
FUNCTIONS = AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_sum", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "double_exponential_smoothing", "holt_winters", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets",
    "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "time",
    "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin",
    "sinh", "tan", "tanh", "deg", "pi", "rad",
}  # fmt: skip
# Keywords followed by a parenthesised label list, and the other word operators.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
WORD_OPERATORS = {"and", "or", "unless", "bool", "offset", "atan2"}
SYMBOL_OPERATORS = {"+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", ","}

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|[Ii]nf|[Nn]a[Nn])
    | (?P<variable>\$\{?\w+\}?)
    | (?P<name>(?!:\d)[A-Za-z_:][\w:]*)
    | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,:@])
    | (?P<open>[(\[{])
    | (?P<close>[)\]}])
    )""",
    re.VERBOSE,
)
_PAIRS = {"(": ")", "[": "]", "{": "}"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$:.])[A-Za-z_:][\w:]*")
_KEYWORDS = LABEL_LIST_KEYWORDS | WORD_OPERATORS | {"inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: identifiers that are not functions, keywords or labels.

    Strings, label matchers, ranges and `by (...)`-style label lists are blanked first, so label names
    and values are never taken for metrics; an identifier followed by `(` is a function or aggregation.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("[]", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def _tokens(expr: str) -> list[tuple[str, str]]:
    out, pos, end = [], 0, len(expr.rstrip())
    while pos < end:
        match = _TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise ValueError(f"unexpected {expr[pos:].strip()[:20]!r} at {pos}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _check_matchers(tokens: list[tuple[str, str]]) -> None:
    """`{name op "value", ...}`, with a regular expression that compiles after =~ and !~."""
    i = 0
    while i < len(tokens):
        matcher = tokens[i : i + 3]
        kinds = [kind for kind, _ in matcher]
        if kinds != ["name", "op", "string"] or matcher[1][1] not in {"=", "!=", "=~", "!~"}:
            raise ValueError(f"bad label matcher near {matcher}")
        if matcher[1][1] in {"=~", "!~"}:
            re.compile(matcher[2][1][1:-1].encode().decode("unicode_escape"))
        i += 3
        if i < len(tokens) and tokens[i] != ("op", ","):
            raise ValueError(f"bad label matcher near {tokens[i]}")
        i += 1


def check(expr: str) -> None:
    """Raise ValueError unless `expr` looks like valid PromQL (see the module's docstring)."""
    tokens = _tokens(expr)
    if not tokens:
        raise ValueError("empty expression")
    stack: list[tuple[str, int]] = []
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "open":
            stack.append((text, i))
        elif kind == "close":
            if not stack or _PAIRS[stack[-1][0]] != text:
                raise ValueError(f"unbalanced {text!r} at token {i}")
            opener, start = stack.pop()
            inside = tokens[start + 1 : i]
            if opener == "{":
                _check_matchers(inside)
            elif opener == "[" and not _is_range(inside):
                raise ValueError(f"bad range {''.join(t for _, t in inside)!r}")
        elif kind == "name" and following == ("open", "("):
            if text not in FUNCTIONS and text not in LABEL_LIST_KEYWORDS:
                raise ValueError(f"unknown function {text!r}")
        elif kind == "name" and text in LABEL_LIST_KEYWORDS and text not in {"group_left", "group_right"}:
            raise ValueError(f"{text!r} without a label list")
        elif kind == "op" and text not in SYMBOL_OPERATORS and not (stack and stack[-1][0] in "{["):
            raise ValueError(f"operator {text!r} outside a matcher or range")
    if stack:
        raise ValueError(f"unclosed {stack[-1][0]!r}")


def _is_range(inside: list[tuple[str, str]]) -> bool:
    """`[5m]`, `[$__rate_interval]`, or a subquery's `[1h:5m]` / `[1h:]`."""
    kinds = [kind for kind, _ in inside]
    if kinds in (["duration"], ["variable"]):
        return True
    timed = {"duration", "variable"}
    return len(inside) in (2, 3) and kinds[0] in timed and inside[1] == ("op", ":") and set(kinds[2:]) <= timed
