//! iptables-ctl: keeps a Docker host behind an iptables firewall that Docker can neither
//! bypass nor clobber.
//!
//! The library holds everything; the `iptables-ctl` binary is a thin command line over
//! it ([`cli`]). A policy file ([`policy`]) says what the admin means; [`plan`] expands
//! it once per family into typed rules that name no firewall syntax; the backend
//! ([`iptables`]) spells a plan as `iptables-restore` files, checks their shape, proves
//! them by loading them into a throwaway network namespace with the kernel's own parser,
//! and reads the live rules back. The flows reach it only through [`backend`], the
//! trait a second backend (nftables) implements beside it. The files are written as one set ([`files`]); systemd
//! loads them at boot ([`systemd`]); the flows that put an instance in force and say
//! whether it is ([`control`]), the exposure audit ([`audit`]) and the lints
//! ([`lints`]) judge facts read from the host ([`host`]). [`family`] and [`packet`] are the few words every part shares.

pub mod audit;
pub mod backend;
pub mod bounds;
pub mod cli;
pub mod command;
pub mod control;
pub mod family;
pub mod files;
pub mod host;
pub mod iptables;
pub mod lints;
pub mod packet;
pub mod plan;
pub mod policy;
pub mod systemd;
