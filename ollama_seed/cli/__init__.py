"""The command line: argparse subcommands, exit codes, and the progress renderers; the only place that prints.

May import every other subpackage.
"""
