"""Helpers shared by the test tiers that run against a real control plane (no fakes here)."""
