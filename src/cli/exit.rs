//! Every exit code iptables-ctl returns, in one place. Scripts and configuration
//! management branch on them, so each outcome has its own code, following systemctl
//! and the LSB where they have one (status: 0 running, 3 not running, 4 unknown
//! unit). The README's table is this list.

/// The command did what was asked; for `status`, the instance is active and its rules
/// protect what the policy says; for `audit`, nothing is reachable beyond the policy.
pub const SUCCESS: u8 = 0;
/// The command could not do what was asked (an error, or a refusal); the message on
/// standard error says what, and whether anything changed (a refusal changes nothing).
pub const FAILURE: u8 = 1;
/// The command line was wrong (clap reports it and exits with this code itself).
pub const USAGE: u8 = 2;
/// `status`: the instance is installed but not active (stopped or failed): LSB's and
/// systemctl's "not running".
pub const NOT_RUNNING: u8 = 3;
/// `status`: no such instance is installed: systemctl's "no such unit".
pub const NOT_INSTALLED: u8 = 4;
/// `status`, and `install`, `reload`, `start`, `restart`, `apply`, `confirm` after they
/// made their change: the instance is active but the live rules do not protect what the
/// policy says (a lint of severity error fires, such as drift or FORWARD not jumping to
/// DOCKER-USER first; a port is reachable beyond the policy; the policy changed since it
/// was applied or this version renders it into other rules than the version that wrote
/// the files; or a check could not run).
pub const NOT_IN_FORCE: u8 = 5;
/// `audit`: a published port is reachable from sources the policy does not allow, or
/// cannot be decided.
pub const EXPOSED: u8 = 6;
/// `diff`: applying the policy would change the live rules (diff(1)'s "different").
pub const DIFFERENT: u8 = 1;
/// `diff`: it could not tell (a bad policy, an unreadable firewall): diff(1)'s
/// "trouble", so that a script never reads trouble as "would change".
pub const DIFF_TROUBLE: u8 = 2;
