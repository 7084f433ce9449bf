"""pqike: a post-quantum hybrid IKEv2 daemon and command-line tool."""

__version__ = "0.1.0"
