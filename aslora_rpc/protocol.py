"""The protocol version exchanged at registration, and which peer versions this build accepts."""

from __future__ import annotations

PROTOCOL_VERSION = 4
"""Bump with every wire change a peer of the previous version would misread (the package stays aslora.v1
while changes are additive; a breaking change gets aslora.v2). Version 2: the plan's noise mode became
`test_mode_requested` (safe by default), and updates carry no step count or noise variance. Version 3:
a long-lived federation: silos fetch the run's plan (GetRun) and check it before they register in that
run (or decline it, DeclineRun), and name their run in heartbeats and task polls; evaluation tasks (an
older silo would take one for a training task) and ReleaseEvaluation; updates may carry a trained
factor's secant sums (silo-update/3), which a version-2 coordinator refuses. Version 4: secure
aggregation: a task may carry `secure_aggregation` (an older silo would ignore it and upload its update in
the clear), the key, share and unmasking calls, and masked uploads; the training plan's gradient
smoothing and the B/A learning-rate ratio of the `lalora` policy (a version-3 silo would train such a run
without them)."""
COMPATIBLE_VERSIONS = frozenset({PROTOCOL_VERSION})


def is_compatible(peer_version: int) -> bool:
    """Whether a peer speaking `peer_version` can take part in a run with this build."""
    return peer_version in COMPATIBLE_VERSIONS
