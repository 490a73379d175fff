//! Bounds on the whole process, set once at start: however large or strange an input
//! (a policy, a template, a live ruleset), a run cannot take the host's memory with it.
//! The limits on each input (sizes, rule counts, render time, walk budget) come first
//! and give located errors; this is the backstop behind them.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The most address space one run may use. A run needs a few hundred MiB at most;
/// beyond this an allocation fails and the process ends (Rust aborts on a failed
/// allocation, with `memory allocation of N bytes failed`) having written nothing
/// half: every write is a rename or a set swap.
pub const ADDRESS_SPACE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

/// Lowers the process's address-space limit to [`ADDRESS_SPACE_LIMIT`] (a lower limit
/// already set is kept; the hard limit is left alone). Children (iptables-restore and
/// the like) inherit it, which they are far below.
pub fn limit_memory() -> nix::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_AS)?;
    let wanted = soft.min(hard).min(ADDRESS_SPACE_LIMIT);
    setrlimit(Resource::RLIMIT_AS, wanted, hard)
}
