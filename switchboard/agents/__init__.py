"""Agents: definitions, tool bundles, handoffs, model providers and the offline model."""
