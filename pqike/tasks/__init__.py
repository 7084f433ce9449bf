"""IKE tasks: one module per job (ike_init, ike_auth, ike_config, child_create, ...)."""
