"""Rendering: tables, JSON, plots, Markdown reports, progress. Renders, never computes."""
