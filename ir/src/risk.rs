//! Risk assessment: the tier each stage of a job runs in, from one table.
//!
//! A stage is described by [`StageFacts`]: whose boundary it belongs to,
//! the most sensitive records it handles in the clear, whether it
//! decrypts them, and whether it runs the program's own (DSL) code on
//! them. [`assess`] finds the first row of [`RULES`] that matches and then
//! raises the tier to what the policies require ([`Requirement`]). Tier 0
//! is the job's own process. `docs/SANDBOX.md` prints the same table.
//!
//! The rows, in order:
//!
//! | rule | the stage | tier |
//! |---|---|---|
//! | `owner` | is in the data owner's boundary (source, validate, classify, route) | 0 |
//! | `no-records` | is a compute stage no record can reach (a policy raised every record above its lane) | 0 |
//! | `restricted-clear` | opens restricted records | 3 |
//! | `confidential-code` | opens confidential records and runs the program's code on them | 2 |
//! | `confidential-builtin` | opens confidential records, built-in operators only | 1 |
//! | `ciphertexts` | computes on restricted records' ciphertexts, holds no key | 1 |
//! | `public` | computes over public records only | 0 |
//! | `aggregates` | sees aggregates only (merge, sink) | 0 |
//!
//! and then `policy`: a compute stage that records reach runs in at least
//! the tier a policy requires.

use serde::Serialize;

/// The most sensitive records a stage handles in the clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sees {
    /// No records: aggregates only.
    Aggregates,
    /// Public records.
    Public,
    /// Confidential records.
    Confidential,
    /// Restricted records.
    Restricted,
}

/// Whose part of the job a stage is (DESIGN.md, "Roles and trust").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// The data owner's: reads, classifies and seals the owner's records,
    /// which it holds in the clear anyway.
    Owner,
    /// Compute: aggregates records it is handed.
    Compute,
    /// Output: merges and writes aggregates.
    Output,
}

/// What the risk table reads about one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StageFacts {
    /// Whose part of the job it is.
    pub boundary: Boundary,
    /// The most sensitive records it handles in the clear.
    pub sees: Sees,
    /// Whether it decrypts them (they reach it sealed).
    pub decrypts: bool,
    /// Whether it runs the program's own code (lambdas, a classifier).
    pub user_code: bool,
    /// Whether any record can reach it (a policy that raises every record
    /// to an encrypted lane leaves the public lane's stages without any).
    pub reachable: bool,
}

/// A tier a policy requires of the job's compute stages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// The least tier.
    pub tier: u8,
    /// Where it comes from, e.g. ``policy `p`: require tier >= 2``.
    pub source: String,
}

/// One row of the risk table.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Rule {
    /// Its name, as `explain` and `_meta` show it.
    pub name: &'static str,
    /// The tier it gives.
    pub tier: u8,
    /// When it applies, in words.
    pub when: &'static str,
    /// Why that tier.
    pub why: &'static str,
    #[serde(skip)]
    matches: fn(&StageFacts) -> bool,
}

/// The risk table, first match wins.
pub const RULES: &[Rule] = &[
    Rule {
        name: "owner",
        tier: 0,
        when: "a stage of the data owner's boundary: source, validate, classify, route",
        why: "classification has to see the owner's plaintext, which the owner already holds; \
              the program's classifier is interpreted DSL with no I/O",
        matches: |f| f.boundary == Boundary::Owner,
    },
    Rule {
        name: "no-records",
        tier: 0,
        when: "a compute stage no record can reach",
        why: "a policy raised every record above this lane: there is nothing to isolate",
        matches: |f| f.boundary == Boundary::Compute && !f.reachable,
    },
    Rule {
        name: "restricted-clear",
        tier: 3,
        when: "opens restricted records",
        why: "the most sensitive records in the clear: a separate kernel (microVM)",
        matches: |f| f.decrypts && f.sees == Sees::Restricted,
    },
    Rule {
        name: "confidential-code",
        tier: 2,
        when: "opens confidential records and runs the program's code on them",
        why: "user code over decrypted records: the host kernel behind gVisor's",
        matches: |f| f.decrypts && f.sees == Sees::Confidential && f.user_code,
    },
    Rule {
        name: "confidential-builtin",
        tier: 1,
        when: "opens confidential records, built-in operators only",
        why: "decrypted records, our own operators: namespaces, seccomp, Landlock, cgroups",
        matches: |f| f.decrypts && f.sees == Sees::Confidential,
    },
    Rule {
        name: "ciphertexts",
        tier: 1,
        when: "computes on restricted records' TFHE ciphertexts and holds no key",
        why: "nothing to decrypt with; the native sandbox keeps it from the keystore, the network and the host",
        matches: |f| f.boundary == Boundary::Compute && !f.decrypts && f.sees > Sees::Public,
    },
    Rule {
        name: "public",
        tier: 0,
        when: "computes over public records only",
        why: "nothing secret in the clear; the program's code is interpreted DSL with no I/O",
        matches: |f| f.boundary == Boundary::Compute && f.sees <= Sees::Public,
    },
    Rule {
        name: "aggregates",
        tier: 0,
        when: "sees aggregates only: merge, sink",
        why: "the results are what the job publishes",
        matches: |_| true,
    },
];

/// The name of the row that applies a policy's requirement.
pub const POLICY_RULE: &str = "policy";

/// The tier of one stage and the rule that chose it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// 0 (the job's process) to 3.
    pub tier: u8,
    /// The rule: a name from [`RULES`], or [`POLICY_RULE`].
    pub rule: &'static str,
    /// Why, in one line.
    pub why: String,
}

/// The tier `facts` call for under `requirements`: the first matching row
/// of [`RULES`], raised to the highest requirement when that is higher
/// and records reach the stage (compute stages only: the owner's stages
/// stay with the owner, and merge and sink see aggregates).
pub fn assess(facts: &StageFacts, requirements: &[Requirement]) -> Assignment {
    let rule = RULES
        .iter()
        .find(|r| (r.matches)(facts))
        .expect("the last rule matches everything");
    let mut out = Assignment {
        tier: rule.tier,
        rule: rule.name,
        why: format!("{}: {}", rule.when, rule.why),
    };
    if facts.boundary == Boundary::Compute
        && facts.reachable
        && let Some(req) = requirements.iter().max_by_key(|r| r.tier)
        && req.tier > out.tier
    {
        out = Assignment {
            tier: req.tier,
            rule: POLICY_RULE,
            why: format!("{} (the table alone gives {})", req.source, out.tier),
        };
    }
    out
}

/// The tier a `with sandbox = "..."` entry names.
pub fn tier_of_sandbox_name(name: &str) -> Option<u8> {
    match name {
        "native" => Some(1),
        "gvisor" => Some(2),
        "microvm" | "firecracker" => Some(3),
        _ => None,
    }
}

/// The names [`tier_of_sandbox_name`] knows.
pub const SANDBOX_NAMES: &[&str] = &["native", "gvisor", "microvm", "firecracker"];

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(sees: Sees, decrypts: bool, user_code: bool) -> StageFacts {
        StageFacts {
            boundary: Boundary::Compute,
            sees,
            decrypts,
            user_code,
            reachable: true,
        }
    }

    /// The classify stage: the owner's, running the classifier over every
    /// record in the clear.
    fn owner() -> StageFacts {
        StageFacts {
            boundary: Boundary::Owner,
            sees: Sees::Restricted,
            decrypts: false,
            user_code: true,
            reachable: true,
        }
    }

    #[test]
    fn the_table() {
        let cases = [
            (compute(Sees::Restricted, true, true), 3, "restricted-clear"),
            (
                compute(Sees::Restricted, true, false),
                3,
                "restricted-clear",
            ),
            (
                compute(Sees::Confidential, true, true),
                2,
                "confidential-code",
            ),
            (
                compute(Sees::Confidential, true, false),
                1,
                "confidential-builtin",
            ),
            (compute(Sees::Restricted, false, true), 1, "ciphertexts"),
            (compute(Sees::Public, false, true), 0, "public"),
            (compute(Sees::Public, false, false), 0, "public"),
        ];
        for (facts, tier, rule) in cases {
            let a = assess(&facts, &[]);
            assert_eq!((a.tier, a.rule), (tier, rule), "{facts:?}");
        }
        assert_eq!(assess(&owner(), &[]).rule, "owner");
        let merge = StageFacts {
            boundary: Boundary::Output,
            sees: Sees::Aggregates,
            decrypts: false,
            user_code: false,
            reachable: true,
        };
        assert_eq!(assess(&merge, &[]).rule, "aggregates");
    }

    #[test]
    fn policies_raise_compute_stages_only() {
        let req = [
            Requirement {
                tier: 2,
                source: "policy `a`".into(),
            },
            Requirement {
                tier: 3,
                source: "policy `b`".into(),
            },
        ];
        let a = assess(&compute(Sees::Public, false, true), &req);
        assert_eq!((a.tier, a.rule), (3, POLICY_RULE));
        assert!(a.why.starts_with("policy `b`"), "{}", a.why);
        // Never lowered.
        let low = [Requirement {
            tier: 1,
            source: "p".into(),
        }];
        assert_eq!(assess(&compute(Sees::Restricted, true, true), &low).tier, 3);
        // The owner's stages and merge stay where the table puts them.
        assert_eq!(assess(&owner(), &req).tier, 0);
        // A stage no record reaches has nothing to isolate.
        let empty = StageFacts {
            reachable: false,
            ..compute(Sees::Public, false, true)
        };
        assert_eq!(assess(&empty, &req).rule, "no-records");
    }

    #[test]
    fn sandbox_names() {
        for n in SANDBOX_NAMES {
            assert!(tier_of_sandbox_name(n).is_some());
        }
        assert_eq!(tier_of_sandbox_name("gvisor"), Some(2));
        assert_eq!(tier_of_sandbox_name("docker"), None);
    }
}
