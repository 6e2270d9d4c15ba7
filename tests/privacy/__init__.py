"""Tests of aslora_core.privacy (a package, so test module names cannot clash with other folders')."""
