"""Tenants, users, memberships, passwords, lockout, refresh tokens and service accounts."""
