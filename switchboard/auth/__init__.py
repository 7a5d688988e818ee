"""Signing keys, EdDSA tokens, JWKS and the replay cache: Switchboard as a token issuer."""
