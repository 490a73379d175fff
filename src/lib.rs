//! iptables-ctl: keeps a Docker host behind an iptables firewall that Docker can neither
//! bypass nor clobber.
//!
//! The library holds everything; the `iptables-ctl` binary is a thin command line over
//! it. A policy file ([`policy`]) is rendered by Tera templates ([`render`]) into
//! `iptables-restore` files whose structure is checked ([`ruleset`]) and then proven by
//! loading them into a throwaway network namespace with the kernel's own parser
//! ([`trial`]), before they are written atomically ([`files`]).

pub mod audit;
pub mod bounds;
pub mod cli;
pub mod command;
pub mod conflicts;
pub mod control;
pub mod evaluate;
pub mod exit;
pub mod files;
pub mod fileset;
pub mod forward;
pub mod host;
pub mod hostnet;
pub mod instance;
pub mod iptables;
pub mod live;
pub mod lockout;
pub mod output;
pub mod policy;
pub mod render;
pub mod ruleset;
pub mod source;
pub mod starter;
pub mod status;
pub mod systemd;
pub mod trial;
pub mod units;
