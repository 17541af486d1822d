"""Benchmarks that run against a real local Synapse (see bench/README.md)."""
