"""IKEv2 wire codec: IANA numbers, payloads and messages. No state, no I/O."""
