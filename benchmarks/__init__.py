"""Benchmarks for ollama-seed (not part of the installed package). See ``benchmarks/pullbench``."""
