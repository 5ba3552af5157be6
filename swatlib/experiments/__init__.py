"""Experiments: one module per notebook family, each turning parameters into cached results."""
