//! The datapath drivers themselves, against the real kernel in throwaway namespace worlds
//! ([`world`]): the eBPF NAT end to end ([`ebpf_nat`]), dual-stack pods' NAT66 ([`ebpf_nat6`]), the eBPF pins, attachments and
//! counters ([`ebpf_pins`]), a program upgrade under a running stream ([`ebpf_upgrade`]) and
//! the nftables datapath ([`nft`]). The only tests that name a driver type; every other test
//! reaches the datapaths through the registry. One test binary (one link) for all of them.
//! Each skips with a message when not root (or without a tool it needs); none touches the root
//! namespace or /sys/fs/bpf.

#[path = "../common/mod.rs"]
mod common;
mod ebpf_nat;
mod ebpf_nat6;
mod ebpf_pins;
mod ebpf_upgrade;
mod nft;
mod world;
