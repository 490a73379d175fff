//! iptables-ctl: keeps a Docker host behind an iptables firewall that Docker can neither
//! bypass nor clobber.
//!
//! The library holds everything; the `iptables-ctl` binary is a thin command line over
//! it ([`cli`]). A policy file ([`policy`]) says what the admin means; the backend
//! ([`iptables`]) renders it into `iptables-restore` files, checks their shape, proves
//! them by loading them into a throwaway network namespace with the kernel's own parser,
//! and reads the live rules back. The files are written as one set ([`files`]); systemd
//! loads them at boot ([`systemd`]); the flows that put an instance in force and say
//! whether it is ([`control`]) and the exposure audit ([`audit`]) judge facts read from
//! the host ([`host`]).

pub mod audit;
pub mod bounds;
pub mod cli;
pub mod command;
pub mod control;
pub mod family;
pub mod files;
pub mod host;
pub mod iptables;
pub mod packet;
pub mod plan;
pub mod policy;
pub mod systemd;
