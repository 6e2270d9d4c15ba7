"""What the networked processes share: endpoints, TLS, channels, health, chunked transfer, config files."""
