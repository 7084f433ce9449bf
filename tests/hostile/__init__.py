"""Hostile-peer suite (issue 8): what an attacker without credentials, or a peer that holds
the keys and sends garbage, can make two in-memory engines do. See README.md here."""
