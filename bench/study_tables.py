"""The learning studies' tables: per run group (mean and spread over seeds) and per run (every round)."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from aslora_core.factor_choice import FactorChoice
from aslora_core.policy_traits import LALORA
from aslora_core.reporting import short_layer
from aslora_core.results import RunResult, read_results
from bench.learning_plans import SMOOTHED_SUFFIX
from bench.study_plans import FIXED_RULES

TARGET_SHARE = 0.95
"""Rounds to reach this share of the best accuracy any run reached at the same epsilon."""
PRIVATE_GROUP = re.compile(r"^(?P<setting>eps[\d.]+(?:-\d+rounds)?)-(?P<policy>.+)$")
"""A private run group's name: its setting (the epsilon, and the rounds where a plan varies them), then
the policy; groups are compared only within one setting."""
ONE_FACTOR = frozenset({FactorChoice.A.value, FactorChoice.B.value})
"""The selections of a layer that trains one factor in a round."""


def _group(name: str) -> str:
    """A run's name without its seed: the row it belongs to."""
    return re.sub(r"-seed\d+$", "", name)


def _results(plan: str, results_dir: Path) -> list[tuple[Path, RunResult]]:
    """Every results file of the plan, in name order, with its run."""
    return [(path, read_results(path)) for path in sorted((results_dir / plan).glob("*.json"))]


def _grouped(plan: str, results_dir: Path, keep: Callable[[RunResult], bool]) -> dict[str, list[RunResult]]:
    """The plan's runs that `keep` accepts, by run group (name without the seed), in name order."""
    groups: dict[str, list[RunResult]] = {}
    for path, result in _results(plan, results_dir):
        if keep(result):
            groups.setdefault(_group(path.stem), []).append(result)
    return groups


def _epsilon_label(result: RunResult) -> str:
    target = result.settings["privacy"]["target_epsilon"]
    return "non-private" if target is None else f"{target:g}"


def _final_accuracy(result: RunResult) -> float:
    """The accuracy after the last round of a finished run."""
    if result.final_accuracy is None:
        raise ValueError(f"a run of policy {result.policy} recorded no round")
    return result.final_accuracy


def _markdown(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: a header of `columns`, then a line per row of formatted cells."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summarize(plan: str, results_dir: Path) -> str:
    """A markdown table per row (policy, estimator, epsilon): final dev accuracy mean and spread over
    seeds, the best round, rounds to reach 95% of the best accuracy any run reached at that epsilon,
    the epsilon spent and the wall time."""
    groups = _grouped(plan, results_dir, lambda _result: True)
    best: dict[str, float] = {}
    for results in groups.values():
        for result in results:
            label = _epsilon_label(result)
            top = max(r.accuracy for r in result.rounds)
            best[label] = max(best.get(label, 0.0), top)
    rows = []
    for name, results in sorted(groups.items()):
        finals = [_final_accuracy(r) for r in results]
        bests = [max(record.accuracy for record in r.rounds) for r in results]
        reach = [_rounds_to(r, TARGET_SHARE * best[_epsilon_label(r)]) for r in results]
        reached = [r for r in reach if r is not None]
        reach_text = f"{statistics.mean(reached):.1f} ({len(reached)}/{len(reach)})" if reached else "never"
        epsilons = [r.epsilon for r in results]
        walls = [r.wall_seconds for r in results]
        rows.append(
            (
                name,
                len(results),
                f"{statistics.mean(finals):.4f} ± {_spread(finals)}",
                f"{statistics.mean(bests):.4f}",
                reach_text,
                f"{max(epsilons):.3f}",
                f"{statistics.mean(walls):.0f}",
            )
        )
    columns = ("run", "seeds", "final accuracy (mean ± sd)", "best round (mean)", "rounds to 95% of best")
    return _markdown((*columns, "epsilon", "wall s"), rows)


def per_run_table(plan: str, results_dir: Path) -> str:
    """A markdown row per finished run: accuracy after each round, the final one, the share of layers
    on B per round, the epsilon spent and the wall time."""
    rows = [
        (
            path.stem,
            ", ".join(f"{r.accuracy:.3f}" for r in result.rounds),
            f"{_final_accuracy(result):.3f}",
            ", ".join(f"{r.b_fraction:.2f}" for r in result.rounds),
            f"{result.epsilon:.3f}",
            f"{result.wall_seconds:.0f}",
        )
        for path, result in _results(plan, results_dir)
    ]
    columns = ("run", "accuracy per round", "final", "layers on B per round", "epsilon", "wall s")
    return _markdown(columns, rows)


def curvature_tables(plan: str, results_dir: Path) -> str:
    """Per run that recorded curvature, the curvature map as a markdown table: a row per layer, a column
    per round, the smoothed secant estimate of the factor the layer trained (starred where the score used
    an estimate for it), and a last row with the share of layer-factors that used an estimate."""
    tables = []
    for path, result in _results(plan, results_dir):
        if not any(record.curvature for record in result.rounds):
            continue
        layers = list(dict.fromkeys(layer for record in result.rounds for layer in record.selection))
        rows = [
            [short_layer(layer)]
            + [
                _curvature_cell(record.selection.get(layer), (record.curvature or {}).get(layer))
                for record in result.rounds
            ]
            for layer in layers
        ]
        rows.append(["share estimated"] + [_share(record.curvature_share) for record in result.rounds])
        columns = ["layer"] + [str(record.round) for record in result.rounds]
        title = f"{path.stem}: lambda estimate of the trained factor per round (*: used by the score)"
        tables.append(f"{title}\n\n{_markdown(columns, rows)}")
    return "\n\n".join(tables)


def _curvature_cell(choice: str | None, per_factor: dict[str, list[float | None]] | None) -> str:
    """`estimate[*]` of the trained factor, or '-' when the layer trained both or has no estimate."""
    if choice is None or per_factor is None or choice not in per_factor:
        return "-"
    used, estimate, _ = per_factor[choice]
    if estimate is None:
        return "-"
    return f"{estimate:.3g}" + ("*" if used is not None else "")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _finals_by_seed(plan: str, results_dir: Path) -> dict[str, dict[str, float]]:
    """Per run group, its final accuracy per seed."""
    finals: dict[str, dict[str, float]] = {}
    for path, result in _results(plan, results_dir):
        seed = path.stem.rsplit("-seed", 1)[1]
        finals.setdefault(_group(path.stem), {})[seed] = _final_accuracy(result)
    return finals


def _spread(values: list[float]) -> str:
    """The sample standard deviation to four places, or `n/a` for one value (it has none)."""
    return f"{statistics.stdev(values):.4f}" if len(values) > 1 else "n/a"


def _paired_row(name: str, reference: str, finals: dict[str, dict[str, float]]) -> tuple[str, ...] | None:
    """`name`'s final accuracy minus `reference`'s, seed by seed, as a table row (None: no common seed)."""
    seeds = sorted(set(finals[name]) & set(finals[reference]))
    differences = [finals[name][seed] - finals[reference][seed] for seed in seeds]
    if not differences:
        return None
    per_seed = ", ".join(f"{difference:+.3f}" for difference in differences)
    mean = f"{statistics.mean(differences):+.4f} ± {_spread(differences)}"
    return (name, reference, str(len(seeds)), mean, per_seed)


def _paired_lines(
    reference_column: str, pairs: list[tuple[str, str]], finals: dict[str, dict[str, float]]
) -> str:
    rows = (_paired_row(name, reference, finals) for name, reference in pairs)
    columns = ("run", reference_column, "seeds in common", "difference (mean ± sd)", "per seed")
    return _markdown(columns, [row for row in rows if row is not None])


def paired_table(plan: str, results_dir: Path) -> str:
    """A markdown row per private run group: its final accuracy minus that of the best fixed rule (a policy
    that does not score) in the same setting (the highest mean over seeds), seed by seed. Runs of one seed
    share the label split, the initial adapter and the noise draws, so the differences are free of the
    spread between seeds."""
    finals = _finals_by_seed(plan, results_dir)
    pairs: list[tuple[str, str]] = []
    for name in sorted(finals):
        match = PRIVATE_GROUP.match(name)
        if match is None:
            continue
        rules = [f"{match['setting']}-{rule}" for rule in FIXED_RULES]
        rules = [rule for rule in rules if rule in finals]
        if rules:
            pairs.append((name, max(rules, key=lambda rule: statistics.mean(finals[rule].values()))))
    return _paired_lines("best fixed rule", pairs, finals)


def paired_against_table(plan: str, results_dir: Path, policy: str) -> str:
    """A markdown row per private run group: its final accuracy minus that of `policy`'s group in the
    same setting, seed by seed (groups of a setting without such runs are left out)."""
    finals = _finals_by_seed(plan, results_dir)
    pairs = []
    for name in sorted(finals):
        match = PRIVATE_GROUP.match(name)
        if match is not None and f"{match['setting']}-{policy}" in finals:
            pairs.append((name, f"{match['setting']}-{policy}"))
    return _paired_lines(policy, pairs, finals)


def smoothing_table(plan: str, results_dir: Path) -> str:
    """A markdown row per smoothed run group: its final accuracy minus that of the same runs without
    smoothing, seed by seed."""
    finals = _finals_by_seed(plan, results_dir)
    pairs = [
        (name, name.removesuffix(SMOOTHED_SUFFIX))
        for name in sorted(finals)
        if name.endswith(SMOOTHED_SUFFIX) and name.removesuffix(SMOOTHED_SUFFIX) in finals
    ]
    return _paired_lines("without smoothing", pairs, finals)


def switch_table(plan: str, results_dir: Path) -> str:
    """A markdown row per run group of a policy that chooses one factor per layer: the mean over seeds of
    the layers' factor switches between consecutive rounds, of the layer-rounds that trained A, and of the
    layers that ever trained A (a run where some layer trained both factors in a round is left out)."""
    groups = _grouped(plan, results_dir, _chooses_one_factor)
    rows = []
    for name, results in sorted(groups.items()):
        counts = [_selection_counts(result) for result in results]
        *per_layer, total = (statistics.mean(column) for column in zip(*counts, strict=True))
        rows.append((name, len(results), *(f"{mean:.1f}" for mean in per_layer), f"{total:.0f}"))
    columns = ("run", "seeds", "switches per run (mean)", "layer-rounds on A (mean)")
    return _markdown((*columns, "layers ever on A (mean)", "layer-rounds per run"), rows)


def score_ratio_table(plan: str, results_dir: Path) -> str:
    """A markdown row per run group that records scores: after each round, A's smoothed score over B's
    (median and largest over the layers and seeds where B's is positive), and A's largest lead over B in
    standard errors of their difference over every layer-round of every seed (the switching rule's
    statistic)."""
    groups = _grouped(plan, results_dir, _records_scores)
    rows = []
    for name, results in sorted(groups.items()):
        rounds = min(len(result.rounds) for result in results)
        ratios = [_score_ratios(results, position) for position in range(rounds)]
        medians = ", ".join(f"{statistics.median(values):.2f}" if values else "n/a" for values in ratios)
        largest = ", ".join(f"{max(values):.2f}" if values else "n/a" for values in ratios)
        leads = [lead for result in results for lead in _leads(result)]
        lead = f"{max(leads):.2f}" if leads else "n/a"
        rows.append((name, len(results), medians, largest, lead))
    columns = ("run", "seeds", "A's score / B's score after each round: median", "largest")
    return _markdown((*columns, "largest lead of A (standard errors)"), rows)


def _records_scores(result: RunResult) -> bool:
    """Whether every round of the run recorded both factors' scores for every layer."""
    return bool(result.rounds) and all(
        record.scores and all(set(per_factor) >= ONE_FACTOR for per_factor in record.scores.values())
        for record in result.rounds
    )


def _score_ratios(results: list[RunResult], position: int) -> list[float]:
    """A's score over B's of every layer of the runs' `position`-th round whose B score is positive."""
    a, b = FactorChoice.A.value, FactorChoice.B.value
    return [
        per_factor[a][0] / per_factor[b][0]
        for result in results
        for per_factor in (result.rounds[position].scores or {}).values()
        if per_factor[b][0] > 0
    ]


def _leads(result: RunResult) -> list[float]:
    """(A - B) / standard error of the difference of every layer-round with a standard error (an
    estimator without variance, `norm`, has none)."""
    a, b = FactorChoice.A.value, FactorChoice.B.value
    return [
        (per_factor[a][0] - per_factor[b][0]) / math.hypot(per_factor[a][1], per_factor[b][1])
        for record in result.rounds
        for per_factor in (record.scores or {}).values()
        if per_factor[a][1] or per_factor[b][1]
    ]


def product_error_table(plan: str, results_dir: Path) -> str:
    """A markdown row per run group whose aggregation reports a product error (separate means of B and
    A): the error mean(B) mean(A) makes against mean(BA), after the first and the last round, mean over
    seeds."""
    groups = {
        name: [_product_errors(result) for result in results]
        for name, results in _grouped(plan, results_dir, _reports_product_error).items()
    }
    rows = [
        (
            name,
            len(runs),
            f"{statistics.mean(errors[0] for errors in runs):.4f}",
            f"{statistics.mean(errors[-1] for errors in runs):.4f}",
        )
        for name, runs in sorted(groups.items())
    ]
    columns = ("run", "seeds", "product error after round 1 (mean)", "after the last round (mean)")
    return _markdown(columns, rows)


def _chooses_one_factor(result: RunResult) -> bool:
    """Whether every layer of the run trained one factor in every round."""
    choices = {choice for record in result.rounds for choice in record.selection.values()}
    return bool(choices) and choices <= ONE_FACTOR


def _reports_product_error(result: RunResult) -> bool:
    """Whether the run recorded a product error after every round."""
    return bool(result.rounds) and all(record.product_error is not None for record in result.rounds)


def _product_errors(result: RunResult) -> list[float]:
    return [record.product_error for record in result.rounds if record.product_error is not None]


def _selection_counts(result: RunResult) -> tuple[int, int, int, int]:
    """(switches between consecutive rounds, layer-rounds on A, layers ever on A, layer-rounds) of a run."""
    layers = list(dict.fromkeys(layer for record in result.rounds for layer in record.selection))
    switches = on_a = layers_on_a = total = 0
    for layer in layers:
        choices = [record.selection[layer] for record in result.rounds if layer in record.selection]
        switches += sum(1 for before, after in itertools.pairwise(choices) if before != after)
        on_a += choices.count(FactorChoice.A.value)
        layers_on_a += FactorChoice.A.value in choices
        total += len(choices)
    return switches, on_a, layers_on_a, total


def _rounds_to(result: RunResult, accuracy: float) -> int | None:
    """The first round (counted from 1) whose accuracy reaches `accuracy`, if any."""
    for position, record in enumerate(result.rounds, start=1):
        if record.accuracy >= accuracy:
            return position
    return None


def study_tables(plan: str, results_dir: Path) -> str:
    """Every table of the plan's finished runs that has a row, in reading order: the groups, the runs,
    the paired differences (against the best fixed rule, against LA-LoRA, with smoothing against
    without), the selections' switch counts, A's scores against B's, the product errors of separate
    means and the curvature maps."""
    tables = [
        summarize(plan, results_dir),
        per_run_table(plan, results_dir),
        paired_table(plan, results_dir),
        paired_against_table(plan, results_dir, LALORA.name),
        smoothing_table(plan, results_dir),
        switch_table(plan, results_dir),
        score_ratio_table(plan, results_dir),
        product_error_table(plan, results_dir),
        curvature_tables(plan, results_dir),
    ]
    return "\n\n".join(table for table in tables if table.count("\n") > 1)
