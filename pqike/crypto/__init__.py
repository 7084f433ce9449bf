"""Pure cryptographic functions of IKEv2: PRFs, key schedule, SK payload protection."""
