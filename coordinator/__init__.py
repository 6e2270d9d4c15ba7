"""The coordinator (import name aslora_coordinator): registry, rounds, aggregation, ledger, admin, gRPC."""
