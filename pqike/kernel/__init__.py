"""Kernel backends behind one interface: what the IKE core asks of the data plane."""
