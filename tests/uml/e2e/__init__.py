"""End-to-end tests run INSIDE user-mode Linux with the xfrm backend (real kernel ESP):
pqike <-> pqike and pqike <-> strongSwan charon (kernel-netlink). Host wrapper:
tests/uml/test_uml_e2e.py; see tests/uml/README.md."""
