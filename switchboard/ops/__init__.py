"""Operational records: failed tasks and other facts operators need after the fact."""
