"""Split example indices across silos: IID, or label-skewed by a Dirichlet prior, and measure the skew."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from aslora_core.data._apportion import apportion
from aslora_core.data.errors import DataError

IndexArray = npt.NDArray[np.int64]
MAX_DIRICHLET_ATTEMPTS = 1000


def partition_iid(num_examples: int, num_silos: int, seed: int) -> list[IndexArray]:
    """Shuffle indices 0..num_examples-1 and deal them into `num_silos` parts whose sizes differ by <= 1."""
    _check_silos(num_examples, num_silos, min_per_silo=1)
    shuffled = np.random.default_rng(seed).permutation(num_examples).astype(np.int64)
    return [np.sort(part) for part in np.array_split(shuffled, num_silos)]


def partition_dirichlet(
    labels: npt.ArrayLike, num_silos: int, alpha: float, seed: int, min_per_silo: int = 1
) -> list[IndexArray]:
    """Label-skewed parts: each class is split over silos by proportions drawn from Dirichlet(alpha).

    Draws are repeated (up to MAX_DIRICHLET_ATTEMPTS) until every silo has at least `min_per_silo`
    examples; smaller `alpha` gives more skew. Parts are disjoint, cover every index and are sorted.
    """
    label_array = np.asarray(labels)
    if label_array.ndim != 1:
        raise ValueError("labels must be a 1-D array")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if min_per_silo < 0:
        raise ValueError(f"min_per_silo must be non-negative, got {min_per_silo}")
    _check_silos(label_array.size, num_silos, min_per_silo)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(label_array == cls) for cls in np.unique(label_array)]
    for _ in range(MAX_DIRICHLET_ATTEMPTS):
        # Counts first: a rejected draw then costs no shuffling.
        counts = [apportion(rng.dirichlet(np.full(num_silos, alpha)), indices.size) for indices in members]
        if int(np.sum(counts, axis=0).min()) < min_per_silo:
            continue
        buckets: list[list[IndexArray]] = [[] for _ in range(num_silos)]
        for indices, class_counts in zip(members, counts, strict=True):
            pieces = np.split(rng.permutation(indices), np.cumsum(class_counts)[:-1])
            for bucket, piece in zip(buckets, pieces, strict=True):
                bucket.append(piece)
        return [np.sort(np.concatenate(bucket)).astype(np.int64) for bucket in buckets]
    raise DataError(
        f"no Dirichlet(alpha={alpha}) draw in {MAX_DIRICHLET_ATTEMPTS} attempts gave every one of "
        f"{num_silos} silos at least {min_per_silo} examples; use a larger alpha, fewer silos or a "
        "smaller min_per_silo"
    )


def label_skew(labels: npt.ArrayLike, parts: Sequence[npt.ArrayLike]) -> float:
    """Mean total-variation distance between each part's label distribution and the global one (0 = none)."""
    label_array = np.asarray(labels)
    if not parts:
        raise ValueError("label_skew needs at least one part")
    classes, global_counts = np.unique(label_array, return_counts=True)
    global_dist = global_counts / global_counts.sum()
    distances: list[float] = []
    for position, part in enumerate(parts):
        part_labels = label_array[np.asarray(part, dtype=np.int64)]
        if part_labels.size == 0:
            raise ValueError(f"part {position} is empty; it has no label distribution")
        counts = np.array([np.count_nonzero(part_labels == cls) for cls in classes], dtype=np.float64)
        distances.append(0.5 * float(np.abs(counts / counts.sum() - global_dist).sum()))
    return float(np.mean(distances))


def _check_silos(num_examples: int, num_silos: int, min_per_silo: int) -> None:
    if num_silos < 1:
        raise ValueError(f"num_silos must be at least 1, got {num_silos}")
    if num_examples < 1:
        raise DataError("there are no examples to partition")
    if num_examples < num_silos * min_per_silo:
        raise DataError(f"{num_examples} examples cannot give {num_silos} silos at least {min_per_silo} each")
