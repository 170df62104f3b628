"""Benchmarks of zonesync against the pure-database floor (not tests; see bench/README.md)."""
