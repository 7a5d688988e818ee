"""Conversations and their messages, owned by one user of one tenant."""
