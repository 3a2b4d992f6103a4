"""Measuring on this machine: options, the parent runner, the child processes, optimize, statistics, machine peak."""
