"""Every query of the Grafana dashboard reads only metrics that a real short run exposes."""

from __future__ import annotations

from tests.observability.dashboard import expressions, metric_names
from tests.observability.federation import ShortRun
from tests.observability.scrape import names, scrape

MIN_PANEL_QUERIES = 10


def test_every_dashboard_query_names_metrics_the_coordinator_or_a_silo_exposes(short_run: ShortRun) -> None:
    exposed = names(scrape(short_run.coordinator_target))
    for target in short_run.silo_targets.values():
        exposed |= names(scrape(target))
    queries = expressions()
    assert len(queries) >= MIN_PANEL_QUERIES
    used: set[str] = set()
    for expression in queries:
        read = metric_names(expression)
        assert read, f"{expression!r} reads no aslora_ metric"
        assert read <= exposed, f"{expression!r} reads {sorted(read - exposed)}, which nothing exposes"
        used |= read
    # The dashboard shows every metric family of DESIGN section 7.
    families = {name for name in exposed if name.startswith("aslora_") and not name.endswith("_created")}
    shown = {name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for name in used}
    exposed_families = {
        name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for name in families
    }
    assert exposed_families <= shown, sorted(exposed_families - shown)
