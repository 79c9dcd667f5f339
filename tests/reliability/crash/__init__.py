"""The crash-state explorer (issue 22): record a workload's file-system operations, generate the
states a power cut can leave under two persistence models, and check every one.

``python -m tests.reliability.crash`` runs the full default exploration and prints the numbers;
``tests/reliability/crash/test_crash_states.py`` is the bounded set CI runs.
"""
