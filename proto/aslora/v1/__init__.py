"""Version 1 of the AS-LoRA wire protocol: generated protobuf messages and gRPC stubs."""
