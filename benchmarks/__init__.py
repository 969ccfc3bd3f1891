"""Benchmarks (`make bench`): how fast a sync moves CRM data into the warehouse."""
