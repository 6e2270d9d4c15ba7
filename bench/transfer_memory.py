"""Peak memory of the receiver when a 1 GiB adapter goes up (silo -> coordinator) and down, over real gRPC.

`python -m bench.transfer_memory --gib 1 --out bench/results/transfer_memory.json`: the chunked-transfer
test's peers (tests/grpc/transfer_measurement.py) at 1 GiB instead of 256 MiB. DESIGN 4: no process may
hold more than two copies of the payload.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tests.grpc.transfer_measurement import (
    LAYER_BYTES,
    MIB,
    TransferMeasurement,
    measure_download,
    measure_upload,
)

GIB = 1 << 30


def _row(direction: str, measured: TransferMeasurement) -> dict[str, object]:
    return {
        "direction": direction,
        "payload_mib": round(measured.size_bytes / MIB, 1),
        "receiver_peak_growth_mib": round(measured.growth_bytes / MIB, 1),
        "copies": round(measured.copies, 3),
        "intact": measured.intact,
    }


def main() -> None:
    """Measure both directions, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=1.0, help="payload size in GiB (64 MiB layers)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    layers = max(1, round(args.gib * GIB / LAYER_BYTES))
    rows = []
    with tempfile.TemporaryDirectory(prefix="aslora-transfer-") as folder:
        rows.append(_row("upload (coordinator receives)", measure_upload(Path(folder), layers)))
    with tempfile.TemporaryDirectory(prefix="aslora-transfer-") as folder:
        rows.append(_row("download (silo receives)", measure_download(Path(folder), layers)))
    print("| direction | payload MiB | receiver peak growth MiB | copies | intact |")
    print("| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print(
            f"| {row['direction']} | {row['payload_mib']} | {row['receiver_peak_growth_mib']} | "
            f"{row['copies']} | {row['intact']} |"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
