"""Switchboard domain: everything the API and the workers share."""
