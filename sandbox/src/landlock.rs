//! The tier-1 Landlock ruleset: the sandbox may read and execute its root,
//! write only under `/tmp` and to `/dev/null`, make no TCP connection and
//! bind no TCP port, and neither signal nor reach abstract UNIX sockets
//! outside itself. Required where the kernel has Landlock: a ruleset the
//! kernel did not enforce fails the sandbox ([`required`]); only on a
//! kernel without Landlock does tier 1 run without it, and `doctor` says so.

use landlock::{
    ABI, Access, AccessFs, AccessNet, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetError, RulesetStatus, Scope, path_beneath_rules,
};

/// The newest ABI this code knows.
const ABI_USED: ABI = ABI::V6;

/// Restricts the calling thread (and what it executes).
pub(crate) fn restrict() -> Result<RulesetStatus, RulesetError> {
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_USED))?
        .handle_access(AccessNet::from_all(ABI_USED))?
        .scope(Scope::from_all(ABI_USED))?
        .create()?
        .add_rules(path_beneath_rules(["/"], AccessFs::from_read(ABI_USED)))?
        .add_rules(path_beneath_rules(["/tmp"], AccessFs::from_all(ABI_USED)))?
        .add_rules(path_beneath_rules(
            ["/dev/null"],
            AccessFs::from_read(ABI_USED) | AccessFs::WriteFile,
        ))?
        .restrict_self()?;
    Ok(status.ruleset)
}

/// Whether the sandbox may go on after [`restrict`] returned `status` on a
/// kernel of Landlock ABI `abi`: fully or partly enforced (an older ABI
/// enforces what it knows), or not at all only where the kernel has no
/// Landlock. Anything else fails closed.
pub(crate) fn required(status: RulesetStatus, abi: i64) -> Result<(), String> {
    match status {
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Ok(()),
        RulesetStatus::NotEnforced if abi == 0 => Ok(()),
        RulesetStatus::NotEnforced => Err(format!(
            "the kernel has Landlock (ABI {abi}) but did not enforce the ruleset"
        )),
    }
}

/// The Landlock ABI this kernel supports, for `doctor` (0: none).
pub(crate) fn kernel_abi() -> i64 {
    // The ruleset-version query of landlock_create_ruleset(2), through the
    // crate: try each ABI from the newest.
    for (n, abi) in [
        (6, ABI::V6),
        (5, ABI::V5),
        (4, ABI::V4),
        (3, ABI::V3),
        (2, ABI::V2),
        (1, ABI::V1),
    ] {
        let ok = Ruleset::default()
            .set_compatibility(landlock::CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .and_then(|r| r.create())
            .is_ok();
        if ok {
            return n;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ruleset_not_enforced_fails_closed_where_the_kernel_has_landlock() {
        assert!(required(RulesetStatus::FullyEnforced, 6).is_ok());
        assert!(required(RulesetStatus::PartiallyEnforced, 3).is_ok());
        assert!(required(RulesetStatus::NotEnforced, 0).is_ok());
        assert!(required(RulesetStatus::NotEnforced, 6).is_err());
    }
}
