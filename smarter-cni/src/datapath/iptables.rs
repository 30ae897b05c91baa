//! The iptables/nftables datapath (placeholder until implemented).
