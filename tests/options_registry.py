"""Every configuration key (and every value of an enumerated one): the tests that show its
effect, or the sample value that is refused at load with "not supported".

tests/unit/test_options_rule.py walks pqike.config.model through msgspec's type info and
fails for a key or value missing here, for a test id that does not exist, and for a
refusal that does not happen: an option added later must come with its test or refusal.
Keys are model paths: ``*`` stands for a name (connection, child, pool, secret).
"""

from __future__ import annotations

E = "tests/exchange/"
U = "tests/unit/"
LC = E + "test_lifecycle.py::"
OPT = E + "test_options.py::"
RULE = U + "test_options_rule.py::"
PPK = E + "test_ppk.py::"
KEYS = E + "test_keyexport.py::"

TESTED: dict[str, tuple[str, ...]] = {
    # daemon (strongswan.conf charon.*)
    "daemon.port": (RULE + "test_daemon_binds_the_configured_ports",),
    "daemon.port_nat_t": (
        RULE + "test_daemon_binds_the_configured_ports",
        OPT + "test_encap_forces_udp_encapsulation",
    ),
    "daemon.fragment_size": (OPT + "test_fragmentation_values",),
    "daemon.fragment_size_v4": (OPT + "test_fragment_size_v4_overrides_fragment_size",),
    "daemon.fragment_size_v6": (OPT + "test_fragment_size_v6_leaves_ipv4_alone",),
    "daemon.max_packet": (
        U + "test_config_errors.py::test_reassembly_memory_must_hold_a_message_before_ike_auth",
        U + "test_sa_fragments.py::test_hostile_sequences_never_raise_and_stay_bounded",
    ),
    "daemon.retransmit_tries": (E + "test_liveness.py::test_dpd_detects_dead_peer_and_restarts",),
    "daemon.retransmit_timeout": (OPT + "test_retransmit_limit_caps_each_timeout",),
    "daemon.retransmit_base": (OPT + "test_retransmit_limit_caps_each_timeout",),
    "daemon.retransmit_jitter": (OPT + "test_retransmit_jitter_shortens_timeouts",),
    "daemon.retransmit_limit": (OPT + "test_retransmit_limit_caps_each_timeout",),
    "daemon.delete_rekeyed_delay": (
        E + "test_rekey_continuity.py::test_delete_rekeyed_delay_is_configurable",
        E + "test_rekey_continuity.py::test_delay_zero_keeps_inbound_until_the_hard_lifetime",
    ),
    "daemon.cookie_threshold": (
        "tests/hostile/test_cookie_flood.py::test_init_flood_cookies_bound_half_open_state",
    ),
    "daemon.block_threshold": (
        "tests/hostile/test_cookie_flood.py::test_block_threshold_limits_half_open_per_address",
    ),
    "daemon.half_open_timeout": (E + "test_halfopen.py::test_half_open_flood_memory_returns",),
    "daemon.init_limit_half_open": (
        E + "test_halfopen.py::test_init_limit_half_open_caps_half_open_sas",
    ),
    "daemon.max_fragments": (U + "test_sa_fragments.py::test_numbers_out_of_range_are_dropped",),
    "daemon.reassembly_memory": (
        E + "test_halfopen.py::test_half_open_sas_cannot_starve_fragmented_handshakes",
    ),
    "daemon.send_vendor_id": (
        E + "test_vendor_id.py::test_no_vendor_id_unless_configured",
        E + "test_vendor_id.py::test_vendor_id_sent_last_in_ike_sa_init_and_noted",
    ),
    "daemon.accept_private_algs": (
        E + "test_vendor_id.py::test_initiator_refuses_private_choice_of_unknown_peer",
    ),
    "daemon.rsa_pss": (E + "test_rsa_pss.py::test_rsa_pss_either_side",),
    "daemon.save_keys.wireshark_keys": (
        KEYS + "test_ike_table_has_a_line_per_key_update_the_last_with_the_final_keys",
        "tests/e2e/test_wireshark_keys.py::test_tshark_decrypts_ike_and_esp_with_the_exported_files",
    ),
    "daemon.save_keys.ike": (
        KEYS + "test_ike_table_has_a_line_per_key_update_the_last_with_the_final_keys",
        KEYS + "test_nothing_written_unless_enabled",
    ),
    "daemon.save_keys.esp": (
        KEYS + "test_esp_table_has_both_directions_with_the_peers_installed_keys",
        KEYS + "test_nothing_written_unless_enabled",
    ),
    "daemon.prefer_configured_proposals": (OPT + "test_prefer_configured_proposals",),
    "daemon.workers": (
        U + "test_workers.py::test_workers_share_the_port_and_each_gets_its_peers",
        U + "test_workers.py::test_what_workers_cannot_share_is_refused",
        U + "test_workers.py::test_what_one_peer_address_keeps_in_one_worker_is_accepted",
        U + "test_workers.py::test_workers_zero_means_one_per_cpu",
        "tests/e2e/test_workers_netns.py::test_two_workers_behind_one_control_socket",
    ),
    "daemon.kernel=auto": (U + "test_kernel_xfrm.py::test_select_backend",),
    "daemon.kernel=none": (U + "test_kernel_xfrm.py::test_select_backend",),
    "daemon.kernel=userspace": (
        "tests/e2e/test_dataplane.py::test_ping_through_tunnel_and_clean_teardown",
    ),
    "daemon.kernel=xfrm": (
        "tests/uml/e2e/test_pqike_xfrm.py::test_ping_counters_and_clean_teardown",
    ),
    "daemon.control_socket": (
        U + "test_daemon_control.py::test_second_daemon_on_the_same_socket_is_refused",
    ),
    "daemon.log.default": (RULE + "test_log_levels_per_subsystem",),
    "daemon.log.file": (U + "test_files.py::test_log_file_is_created_0600",),
    "daemon.log.syslog": (U + "test_log_output.py::test_syslog_lines_carry_facility_ident_and_sa",),
    # connections
    "connections.*.version=2": (U + "test_config_errors.py::test_only_ikev2",),
    "connections.*.local_addrs": (
        E + "test_liveness.py::test_responder_switches_connection_by_identity",
    ),
    "connections.*.remote_addrs": (OPT + "test_remote_port_is_where_we_initiate_to",),
    "connections.*.remote_port": (OPT + "test_remote_port_is_where_we_initiate_to",),
    "connections.*.proposals": (OPT + "test_no_proposal_chosen_hint_as_initiator",),
    "connections.*.vips": (LC + "test_reauthentication_make_before_break",),
    "connections.*.pools": (OPT + "test_pool_dns_is_sent_with_the_virtual_ip",),
    "connections.*.send_certreq": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.send_cert=always": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.send_cert=ifasked": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.send_cert=never": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.fragmentation=yes": (OPT + "test_fragmentation_values",),
    "connections.*.fragmentation=accept": (OPT + "test_fragmentation_values",),
    "connections.*.fragmentation=no": (OPT + "test_fragmentation_values",),
    "connections.*.childless=allow": (OPT + "test_childless_allow_accepts_childless_ike_auth",),
    "connections.*.childless=never": (OPT + "test_childless_never_refuses_childless_ike_auth",),
    "connections.*.encap": (OPT + "test_encap_forces_udp_encapsulation",),
    "connections.*.dpd_delay": (
        E + "test_liveness.py::test_dpd_detects_dead_peer_and_restarts",
        LC + "test_dpd_action_clear_does_not_restart",
    ),
    "connections.*.rekey_time": (OPT + "test_rand_time_spreads_ike_and_child_rekeys",),
    "connections.*.over_time": (OPT + "test_over_time_sets_the_hard_ike_lifetime",),
    "connections.*.rand_time": (OPT + "test_rand_time_spreads_ike_and_child_rekeys",),
    "connections.*.reauth_time": (
        LC + "test_reauthentication_make_before_break",
        LC + "test_hard_lifetime_sends_delete",
    ),
    "connections.*.keyingtries": (
        LC + "test_keyingtries_n_attempts",
        LC + "test_keyingtries_zero_tries_forever_with_back_off",
    ),
    "connections.*.unique=no": (
        LC + "test_unique_without_initial_contact",
        LC + "test_unique_with_initial_contact",
    ),
    "connections.*.unique=never": (
        LC + "test_unique_without_initial_contact",
        LC + "test_unique_with_initial_contact",
    ),
    "connections.*.unique=keep": (
        LC + "test_unique_without_initial_contact",
        LC + "test_unique_with_initial_contact",
    ),
    "connections.*.unique=replace": (
        LC + "test_unique_without_initial_contact",
        LC + "test_unique_with_initial_contact",
    ),
    "connections.*.local.auth=psk": (U + "test_auth_psk.py::test_psk_auth_matches_rfc_formula",),
    "connections.*.local.auth=pubkey": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.local.id": (
        E + "test_peer_identity.py::test_identity_whose_printed_form_does_not_parse_back",
    ),
    "connections.*.local.certs": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.local.cacerts": (OPT + "test_cacerts_are_trust_anchors",),
    "connections.*.local.key": (
        U + "test_config.py::test_private_key_must_belong_to_the_certificate",
    ),
    "connections.*.remote.auth=psk": (U + "test_auth_psk.py::test_psk_auth_matches_rfc_formula",),
    "connections.*.remote.auth=pubkey": (OPT + "test_send_cert_and_send_certreq",),
    "connections.*.remote.id": (
        E + "test_liveness.py::test_responder_switches_connection_by_identity",
    ),
    "connections.*.remote.cacerts": (OPT + "test_cacerts_are_trust_anchors",),
    "connections.*.ppk_id": (
        PPK + "test_ppk_used_psk_hybrid",
        PPK + "test_required_ppk_id_mismatch",
    ),
    "connections.*.ppk_required": (
        PPK + "test_required_by_responder_initiator_without_ppk",
        PPK + "test_optional_ppk_responder_without_it_uses_no_ppk_auth",
    ),
    # children
    "connections.*.children.*.local_ts": (
        E + "test_create_child.py::test_responder_picks_best_fitting_child_config",
    ),
    "connections.*.children.*.remote_ts": (
        E + "test_create_child.py::test_responder_picks_best_fitting_child_config",
    ),
    "connections.*.children.*.esp_proposals": (
        E + "test_create_child.py::test_rekey_pfs_mismatch_is_reported_not_silent",
    ),
    "connections.*.children.*.mode=tunnel": (OPT + "test_child_mode_is_negotiated_and_installed",),
    "connections.*.children.*.mode=transport": (
        OPT + "test_child_mode_is_negotiated_and_installed",
    ),
    "connections.*.children.*.rekey_time": (
        E + "test_create_child.py::test_lifetimes_rekey_children_and_ike_automatically",
    ),
    "connections.*.children.*.life_time": (OPT + "test_child_life_time_is_the_hard_limit",),
    "connections.*.children.*.rand_time": (OPT + "test_rand_time_spreads_ike_and_child_rekeys",),
    "connections.*.children.*.start_action=trap": (
        E + "test_traps.py::test_start_action_trap_first_packet_starts_child_sa",
    ),
    "connections.*.children.*.close_action=trap": (
        E + "test_traps.py::test_close_action_trap_after_peer_deletes_child_sa",
        E + "test_traps.py::test_close_action_trap_after_peer_deletes_the_ike_sa",
    ),
    "connections.*.children.*.dpd_action=trap": (
        E + "test_traps.py::test_dpd_action_trap_after_dead_peer",
    ),
    "connections.*.children.*.start_action=none": (
        LC + "test_start_action_none_initiates_nothing",
    ),
    "connections.*.children.*.start_action=start": (
        LC + "test_start_action_start_initiates_at_start",
        U + "test_daemon_lifecycle.py::test_start_action_start_at_daemon_start_and_at_reload",
    ),
    "connections.*.children.*.close_action=none": (LC + "test_close_action_none_leaves_it_closed",),
    "connections.*.children.*.close_action=start": (
        LC + "test_close_action_start_after_peer_deletes_child",
        LC + "test_close_action_start_after_peer_deletes_ike_sa",
    ),
    "connections.*.children.*.dpd_action=clear": (LC + "test_dpd_action_clear_does_not_restart",),
    "connections.*.children.*.dpd_action=restart": (
        E + "test_liveness.py::test_dpd_detects_dead_peer_and_restarts",
    ),
    # pools, authorities, secrets
    "pools.*.addrs": (E + "test_liveness.py::test_initial_contact_replaces_stale_sa_on_responder",),
    "pools.*.dns": (OPT + "test_pool_dns_is_sent_with_the_virtual_ip",),
    "authorities.*.cacert": (E + "test_falcon_auth.py::test_untrusted_falcon_ca_fails",),
    "secrets.ike.*.secret": (U + "test_auth_psk.py::test_psk_auth_matches_rfc_formula",),
    "secrets.ike.*.ids": (U + "test_config.py::test_psk_lookup_prefers_the_most_specific_secret",),
    "secrets.ppk.*.secret": (PPK + "test_different_ppk_values_fail_authentication",),
    "secrets.ppk.*.ids": (PPK + "test_ppk_id_matches_as_identity",),
    "secrets.private.*.file": (U + "test_config.py::test_secrets_private_key_with_passphrase",),
    "secrets.private.*.secret": (U + "test_config.py::test_secrets_private_key_with_passphrase",),
}
for _sub in ("dmn", "mgr", "ike", "chd", "job", "cfg", "knl", "net", "asn", "enc", "lib", "esp"):
    TESTED[f"daemon.log.{_sub}"] = (RULE + "test_log_levels_per_subsystem",)

# key -> (TOML value, other settings it needs): loading it must fail with "not supported"
REFUSED: dict[str, tuple[object, dict[str, object]]] = {
    "connections.*.mobike": (True, {}),  # MOBIKE (RFC 4555) not implemented
    "connections.*.fragmentation=force": ("force", {}),
    "connections.*.childless=prefer": ("prefer", {}),
    "connections.*.childless=force": ("force", {}),
    "connections.*.dpd_timeout": ("30s", {}),
    "connections.*.local_port": (4600, {}),
    "connections.*.remote.certs": (["peer.pem"], {"connections.*.remote.auth": "pubkey"}),
    "connections.*.remote.key": ("key.pem", {"connections.*.remote.auth": "pubkey"}),
    "connections.*.children.*.rekey_bytes": (1000000, {}),
    "connections.*.children.*.life_bytes": (1000000, {}),
    "connections.*.children.*.rand_bytes": (1000, {}),
    "connections.*.children.*.rekey_packets": (1000, {}),
    "connections.*.children.*.life_packets": (1000, {}),
    "connections.*.children.*.rand_packets": (100, {}),
}

# Done in parallel by another engineer (issue 10): the lead drops an entry at merge, when
# that branch's test or refusal lands. Nothing else may be listed here.
ELSEWHERE: dict[str, str] = {}
