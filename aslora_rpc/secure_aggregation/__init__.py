"""Secure aggregation (Bonawitz et al., CCS 2017, semi-honest, with dropouts): the coordinator learns sums.

The modules are the protocol's parts, free of gRPC: the round's public context (`context`), X25519 round
keys (`keys`) and their certificate signatures (`signatures`), Shamir sharing (`shamir`), masks
(`masks`), share encryption (`share_encryption`), fixed-point encoding in Z_{2^64} (`fixed_point`), the
silo's share-release journal (`release_guard`), the silo's side of a round (`participant`) and the
coordinator's unmasking (`unmasking`). docs/secure-aggregation.md states the protocol and its limits.
"""
