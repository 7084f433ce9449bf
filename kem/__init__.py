"""Key-exchange method registry for IKEv2: classic DH groups and post-quantum KEMs."""
