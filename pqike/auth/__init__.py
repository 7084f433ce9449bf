"""IKEv2 authentication building blocks: RFC 7427 signature schemes (schemes), AUTH and
SIGNATURE_HASH_ALGORITHMS data (payload), PSK (psk), keys (keys) and X.509 (certs)."""
