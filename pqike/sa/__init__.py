"""IKE_SA and CHILD_SA state, the SA database and per-SA helpers (reassembly, windows)."""
