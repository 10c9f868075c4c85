"""The CVSS v3.x base score of a vector string, as FIRST's specification computes it (section 7
of the v3.1 document; v3.0 uses the same base equations), and the qualitative rating of a score.

Only the base metrics count: temporal and environmental metrics in the vector are checked for
form and otherwise ignored (an advisory's severity is its base severity). CVSS v2 and v4 vectors
are not scored here: v4's score comes from lookup tables this module does not carry, and a
made-up number would be worse than none.
"""
from __future__ import annotations

SEVERITIES = ("low", "moderate", "high", "critical")  # the ratings that block, in rising order

import math
import re

_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}
_BASE_VALUES = {
    "AV": set(_AV), "AC": set(_AC), "PR": set(_PR_UNCHANGED), "UI": set(_UI), "S": {"U", "C"},
    "C": set(_CIA), "I": set(_CIA), "A": set(_CIA),
}
_OTHER_VALUES = {  # temporal and environmental metrics: allowed, not scored
    "E": {"X", "U", "P", "F", "H"}, "RL": {"X", "O", "T", "W", "U"}, "RC": {"X", "U", "R", "C"},
    "CR": {"X", "L", "M", "H"}, "IR": {"X", "L", "M", "H"}, "AR": {"X", "L", "M", "H"},
    "MAV": {"X"} | set(_AV), "MAC": {"X"} | set(_AC), "MPR": {"X"} | set(_PR_UNCHANGED),
    "MUI": {"X"} | set(_UI), "MS": {"X", "U", "C"}, "MC": {"X"} | set(_CIA), "MI": {"X"} | set(_CIA),
    "MA": {"X"} | set(_CIA),
}
_PREFIX_RE = re.compile(r"CVSS:3\.[01]/", re.ASCII)


def roundup(value: float) -> float:
    """The specification's Roundup: the smallest number with one decimal that is >= value,
    computed on integers so that 4.000000000000001 (a floating-point artefact) gives 4.0, not 4.1.

    >>> roundup(4.02), roundup(4.0), roundup(4.000000000000001)
    (4.1, 4.0, 4.0)
    """
    scaled = round(value * 100000)
    if scaled % 10000 == 0:
        return scaled / 100000.0
    return (math.floor(scaled / 10000) + 1) / 10.0


def base_score(vector: str) -> float | None:
    """The base score of a CVSS v3.0 or v3.1 vector; None when it is not a well-formed one
    (missing or repeated base metric, unknown metric or value, another version).

    >>> base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")
    9.8
    >>> base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N") is None
    True
    """
    if not isinstance(vector, str) or not _PREFIX_RE.match(vector):
        return None
    metrics: dict[str, str] = {}
    for part in vector[len("CVSS:3.x/"):].split("/"):
        name, sep, value = part.partition(":")
        allowed = _BASE_VALUES.get(name) or _OTHER_VALUES.get(name)
        if not sep or allowed is None or value not in allowed or name in metrics:
            return None
        metrics[name] = value
    if any(name not in metrics for name in _BASE_VALUES):
        return None
    changed = metrics["S"] == "C"
    iss = 1 - (1 - _CIA[metrics["C"]]) * (1 - _CIA[metrics["I"]]) * (1 - _CIA[metrics["A"]])
    if changed:
        impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    else:
        impact = 6.42 * iss
    pr = (_PR_CHANGED if changed else _PR_UNCHANGED)[metrics["PR"]]
    exploitability = 8.22 * _AV[metrics["AV"]] * _AC[metrics["AC"]] * pr * _UI[metrics["UI"]]
    if impact <= 0:
        return 0.0
    if changed:
        return roundup(min(1.08 * (impact + exploitability), 10))
    return roundup(min(impact + exploitability, 10))


def rating(score: float) -> str | None:
    """The qualitative rating of a score (CVSS v3.1 section 5): "none" for 0.0 (no impact: a
    known severity below every blocking level, unlike an unknown one).

    >>> [rating(s) for s in (0.0, 0.1, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0, 10.0)]
    ['none', 'low', 'low', 'moderate', 'moderate', 'high', 'high', 'critical', 'critical']
    """
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "moderate"
    if score > 0.0:
        return "low"
    return "none"
