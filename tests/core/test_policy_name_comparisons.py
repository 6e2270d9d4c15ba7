"""Only the selection policies look at a policy's name: code elsewhere decides by the policy's traits
(`aslora_core.policy_traits`), never by comparing the name with a string literal."""

from __future__ import annotations

import ast
from pathlib import Path

from aslora_core.policy_traits import POLICY_NAMES

REPO = Path(__file__).resolve().parents[2]
CHECKED = ("aslora_core", "aslora_cli", "aslora_rpc", "coordinator", "silo", "bench")
EXEMPT = REPO / "aslora_core" / "selection"
"""The policies themselves may name policies."""


def _spelled_names(node: ast.AST, aliases: dict[str, str]) -> set[str]:
    """The policy names written as string literals in `node` (or as a name bound to one, `aliases`), alone
    or in a literal tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & set(POLICY_NAMES)
    if isinstance(node, ast.Name) and node.id in aliases:
        return {aliases[node.id]}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_spelled_names(element, aliases) for element in node.elts))
    return set()


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Names the file binds to a policy name, e.g. `SVD_POLICY = "svd"`."""
    return {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and node.value.value in POLICY_NAMES
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def name_comparisons(source: str) -> list[tuple[int, str]]:
    """(line, name) of every comparison (`==`, `!=`, `in`, `is`, ...) or `case` with a policy name."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands: list[ast.AST] = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        else:
            continue
        found += [
            (node.lineno, name) for operand in operands for name in sorted(_spelled_names(operand, aliases))
        ]
    return found


def test_the_check_finds_the_spellings_it_forbids() -> None:
    assert name_comparisons('joint = policy == "aslora" and needs_both') == [(1, "aslora")]
    assert name_comparisons('ok = "svd" != policy') == [(1, "svd")]
    assert name_comparisons('fixed = policy in ("ffa", "rolora")') == [(1, "ffa"), (1, "rolora")]
    assert name_comparisons('SVD_POLICY = "svd"\nrobust = policy != SVD_POLICY') == [(2, "svd")]
    assert name_comparisons('match policy:\n    case "fedit":\n        pass') == [(2, "fedit")]
    assert name_comparisons("joint = policy_traits(policy).needs_joint_clipping(score)") == []
    assert name_comparisons('runs = [("ffa", "norm")]; mode = estimator == "norm"') == []


def test_no_code_outside_the_policies_compares_a_policy_name() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name!r}"
        for folder in CHECKED
        for path in sorted((REPO / folder).rglob("*.py"))
        if EXEMPT not in path.parents
        for line, name in name_comparisons(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "decide by the policy's traits (aslora_core.policy_traits) instead"
