//! The logical plan of a query: the operator graph `symbi explain` shows.
//!
//! Every operator has a lane (for the per-lane branches) and a sandbox
//! tier, given by the risk table ([`crate::risk`]) from what the operator
//! sees, whether it decrypts, whether it runs the program's code and what
//! the policies require, with the rule that chose it. Operators whose
//! capability is not built yet are in the graph with their status, so the
//! plan never claims work that does not happen.

use serde::Serialize;

use crate::query::{Lane, Output, Query};

/// How a lane is implemented in this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneImpl {
    /// Plaintext computation, as the lane requires.
    Plaintext,
    /// Sealed with AES-256-GCM under the dataset's data key at classify,
    /// opened only in the aggregation stage, by this implementation.
    AesGcm(symbiont_crypto::Backend),
    /// The restricted records of a stored dataset: they rest sealed with
    /// AES-256-GCM and are opened for aggregation in a microVM (not
    /// computed on under encryption).
    AesGcmStored(symbiont_crypto::Backend),
    /// The homomorphic lane's additive path: TFHE LWE compact lists.
    TfheAdditive,
    /// The homomorphic lane's programmable path: a stored dataset's
    /// restricted records as TFHE integer ciphertexts.
    TfheProgrammable,
}

/// What a job reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InputKind {
    /// A file of records (`--input NAME=FILE`).
    File,
    /// A stored dataset (`--input NAME=DIR`): its restricted records
    /// AES-sealed.
    Store,
    /// A stored dataset's TFHE copy of its restricted records
    /// (`--input NAME=tfhe:DIR`).
    StoreTfhe,
}

impl LaneImpl {
    /// The implementation of `lane` over a file input.
    pub fn of(lane: Lane) -> LaneImpl {
        LaneImpl::for_input(lane, InputKind::File)
    }

    /// The implementation of `lane` over `input`.
    pub fn for_input(lane: Lane, input: InputKind) -> LaneImpl {
        match (lane, input) {
            (Lane::Plaintext, _) => LaneImpl::Plaintext,
            (Lane::AesGcm, _) => LaneImpl::AesGcm(symbiont_crypto::Backend::DEFAULT),
            (Lane::Homomorphic, InputKind::File) => LaneImpl::TfheAdditive,
            (Lane::Homomorphic, InputKind::Store) => {
                LaneImpl::AesGcmStored(symbiont_crypto::Backend::DEFAULT)
            }
            (Lane::Homomorphic, InputKind::StoreTfhe) => LaneImpl::TfheProgrammable,
        }
    }

    /// The name in `_meta.lane_impl`.
    pub fn name(self) -> &'static str {
        match self {
            LaneImpl::Plaintext => "plaintext",
            LaneImpl::AesGcm(symbiont_crypto::Backend::Ring) => "aes-256-gcm envelope (ring)",
            LaneImpl::AesGcm(symbiont_crypto::Backend::RustCrypto) => {
                "aes-256-gcm envelope (aes-gcm)"
            }
            LaneImpl::AesGcmStored(symbiont_crypto::Backend::Ring) => {
                "aes-256-gcm envelope (ring): a stored dataset's restricted records, opened in a microVM"
            }
            LaneImpl::AesGcmStored(symbiont_crypto::Backend::RustCrypto) => {
                "aes-256-gcm envelope (aes-gcm): a stored dataset's restricted records, opened in a microVM"
            }
            LaneImpl::TfheAdditive => {
                "tfhe additive path: core_crypto LWE compact lists (n = 2048, 128-bit), CRT residues, keyless reduction"
            }
            LaneImpl::TfheProgrammable => {
                "tfhe programmable path: integer API, FheInt64 at rest, comparisons and min/max under encryption (128-bit default parameters)"
            }
        }
    }
}

/// One operator of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanNode {
    /// Index in [`Plan::nodes`].
    pub id: usize,
    /// The operator: `source`, `validate`, `commit`, `classify`, `route`,
    /// `aggregate`, `decrypt`, `merge`, `prove`, `sink`.
    pub op: &'static str,
    /// What it does, in one line.
    pub label: String,
    /// The lane of a per-lane operator.
    pub lane: Option<&'static str>,
    /// How that lane is implemented.
    pub lane_impl: Option<&'static str>,
    /// The sandbox tier the operator runs in: 0 is the job's own process.
    pub tier: u8,
    /// The risk table's rule that chose it.
    pub tier_rule: &'static str,
    /// Why, in one line.
    pub tier_why: String,
    /// What provides that tier on this host (`in process`, `gVisor (runsc,
    /// platform ptrace)`, `microVM (QEMU microvm, TCG)`, ...).
    pub runs_in: String,
    /// Whether the operator runs in this build; if not, why.
    pub status: &'static str,
    /// The operators it reads from.
    pub inputs: Vec<usize>,
}

/// The operator graph of one query.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    /// The entry agent.
    pub agent: String,
    /// The operators, sources first.
    pub nodes: Vec<PlanNode>,
}

const RUNS: &str = "runs";
/// The status of the attestation's stages (commit, prove).
const WITH_BUNDLE: &str = "runs with --bundle (in process, on the owner's side)";

impl PlanNode {
    /// Whether the operator runs in a job, given whether the job attests
    /// (`--bundle`): what the job audits and reports in `_meta.tiers`.
    pub fn runs(&self, bundle: bool) -> bool {
        self.status == RUNS || (bundle && self.status == WITH_BUNDLE)
    }
}

impl Plan {
    /// The plan of `query`, reading its input in `format` (`csv`, ...),
    /// or in the format its file's extension gives when `None`.
    pub fn of(query: &Query, format: Option<&str>) -> Plan {
        Plan::for_job(query, format, InputKind::File)
    }

    /// The plan of a job over `query`'s input: as [`Plan::of`], over a
    /// file or a stored dataset, whose sealed batches keep their lanes
    /// whatever this program's classifier says.
    pub fn for_job(query: &Query, format: Option<&str>, input: InputKind) -> Plan {
        let stored = input != InputKind::File;
        let mut nodes: Vec<PlanNode> = Vec::new();
        let mut add = |op, label: String, lane: Option<Lane>, status, inputs: Vec<usize>| {
            let id = nodes.len();
            nodes.push(PlanNode {
                id,
                op,
                label,
                lane: lane.map(Lane::name),
                lane_impl: lane.map(|l| LaneImpl::for_input(l, input).name()),
                tier: 0,
                tier_rule: "",
                tier_why: String::new(),
                runs_in: String::new(),
                status,
                inputs,
            });
            id
        };
        let schema = &query.schema;
        let fields: Vec<String> = schema
            .fields
            .iter()
            .map(|(n, t)| format!("{n}: {}", t.name()))
            .collect();
        let source = add(
            "source",
            format!(
                "`{}` ({}, --input {}=PATH)",
                query.input,
                format.unwrap_or("csv, ndjson, parquet or arrow-ipc by extension"),
                query.input
            ),
            None,
            RUNS,
            vec![],
        );
        let validate = add(
            "validate",
            format!("parse rows as {} {{ {} }}", schema.name, fields.join(", ")),
            None,
            RUNS,
            vec![source],
        );
        let commit = add(
            "commit",
            "dataset commitment (Poseidon over the attested fields, a salt per chunk), signed and logged".into(),
            None,
            WITH_BUNDLE,
            vec![validate],
        );
        let classify = add(
            "classify",
            match (&query.classifier, query.min_lane) {
                (Some(c), Lane::Plaintext) => format!("@classifier `{}` per record", c.name),
                (None, Lane::Plaintext) => "no classifier: every record is public".into(),
                (Some(c), lane) => format!(
                    "@classifier `{}` per record, raised to at least {} (a policy requires its encryption)",
                    c.name,
                    class_of(lane)
                ),
                (None, lane) => format!(
                    "no classifier: every record is {} (a policy requires its encryption)",
                    class_of(lane)
                ),
            },
            None,
            RUNS,
            vec![commit],
        );
        let aggregates: Vec<String> = query.aggregates.iter().map(|a| a.label.clone()).collect();
        let grouping = match &query.grouping {
            Some(_) => "per group, ",
            None => "",
        };
        let mut lane_outputs = Vec::new();
        for lane in Lane::ALL {
            let sealed = lane != Lane::Plaintext;
            let additive = lane == Lane::Homomorphic && !stored;
            let route = add(
                "route",
                format!(
                    "records classified {}{}",
                    class_of(lane),
                    if additive {
                        ": filters, maps and group keys evaluated here, values packed 2048 per list and encrypted under the TFHE public key"
                    } else if lane == Lane::Homomorphic && input == InputKind::StoreTfhe {
                        ": the stored dataset's tfhe.bin, one compact list of FheInt64 per record (its sealed batches are not read)"
                    } else if sealed {
                        ", sealed per batch under the dataset's data key"
                    } else {
                        ""
                    }
                ),
                Some(lane),
                RUNS,
                vec![classify],
            );
            // The homomorphic lane's TFHE paths: compute on ciphertexts,
            // then the key holder decrypts (the labels say which path each
            // aggregate takes).
            let tfhe = match (lane, input) {
                (Lane::Homomorphic, InputKind::File) => Some((
                    format!(
                        "add ciphertext lists per column and reduce each to one LWE ciphertext per residue, holding no key; {grouping}"
                    ),
                    "the key holder decrypts the reduced columns (secret key read here only) and recombines their residues",
                    query
                        .aggregates
                        .iter()
                        .map(|a| match a.kind {
                            crate::query::AggKind::Min | crate::query::AggKind::Max => format!(
                                "{} [no additive path: a job whose restricted records it reaches is refused]",
                                a.label
                            ),
                            _ => format!("{} [additive]", a.label),
                        })
                        .collect::<Vec<_>>(),
                )),
                (Lane::Homomorphic, InputKind::StoreTfhe) => {
                    let compiled = crate::programmable::compile(query);
                    Some((
                        "compare, select and aggregate the stored TFHE ciphertexts with the server key, in parallel over the cores, holding no client key; ".to_owned(),
                        "the key holder decrypts each aggregate's count and value (client key read here only)",
                        query
                            .aggregates
                            .iter()
                            .map(|a| match &compiled {
                                Ok(_) => format!("{} [programmable]", a.label),
                                Err(why) => format!("{} [refused: {why}]", a.label),
                            })
                            .collect(),
                    ))
                }
                _ => None,
            };
            if let Some((compute, decrypt, paths)) = tfhe {
                let compute = add(
                    "aggregate",
                    format!("{compute}{}", paths.join("; ")),
                    Some(lane),
                    RUNS,
                    vec![route],
                );
                lane_outputs.push(add(
                    "decrypt",
                    decrypt.into(),
                    Some(lane),
                    RUNS,
                    vec![compute],
                ));
                continue;
            }
            let label = format!(
                "{}partial {grouping}{}",
                if sealed {
                    "open into a locked, zeroized buffer; "
                } else {
                    ""
                },
                aggregates.join("; ")
            );
            lane_outputs.push(add("aggregate", label, Some(lane), RUNS, vec![route]));
        }
        let merge = add(
            "merge",
            format!(
                "consolidate partials across lanes into {}",
                output_shape(&query.output)
            ),
            None,
            RUNS,
            lane_outputs,
        );
        let mut last = merge;
        if !query.prove.is_empty() {
            last = add(
                "prove",
                format!("Groth16 proofs of {}", query.prove.join(", ")),
                None,
                WITH_BUNDLE,
                vec![merge],
            );
        }
        add(
            "sink",
            "result to stdout (or --out)".into(),
            None,
            RUNS,
            vec![last],
        );
        let mut plan = Plan {
            agent: query.agent.clone(),
            nodes,
        };
        plan.assign_tiers(query, input);
        plan
    }

    /// Gives every operator its tier from the risk table.
    fn assign_tiers(&mut self, query: &Query, input: InputKind) {
        let stored = input != InputKind::File;
        use crate::risk::{Boundary, Requirement, Sees, StageFacts, assess};
        let sees_of = |lane: Lane| match lane {
            Lane::Plaintext => Sees::Public,
            Lane::AesGcm => Sees::Confidential,
            Lane::Homomorphic => Sees::Restricted,
        };
        let requirements: Vec<Requirement> = query
            .tier_requirements
            .iter()
            .map(|(tier, source)| Requirement {
                tier: *tier,
                source: source.clone(),
            })
            .collect();
        for node in &mut self.nodes {
            let lane = Lane::ALL.into_iter().find(|l| Some(l.name()) == node.lane);
            let facts = match node.op {
                "source" | "validate" | "commit" | "classify" | "route" | "decrypt" => StageFacts {
                    boundary: Boundary::Owner,
                    sees: lane.map_or(Sees::Restricted, sees_of),
                    decrypts: false,
                    user_code: node.op == "classify" && query.classifier.is_some(),
                    reachable: true,
                },
                "aggregate" => {
                    let lane = lane.expect("aggregates are per lane");
                    StageFacts {
                        boundary: Boundary::Compute,
                        sees: sees_of(lane),
                        // Both TFHE paths compute on ciphertexts.
                        decrypts: lane == Lane::AesGcm
                            || (lane == Lane::Homomorphic && input == InputKind::Store),
                        user_code: query.runs_user_code(),
                        // Records reach a lane at or above the least one a
                        // policy forces, through the classifier, or kept
                        // in their lanes by an encrypted dataset.
                        reachable: lane >= query.min_lane
                            && (lane == query.min_lane || query.classifier.is_some() || stored),
                    }
                }
                _ => StageFacts {
                    boundary: Boundary::Output,
                    sees: Sees::Aggregates,
                    decrypts: false,
                    user_code: false,
                    reachable: true,
                },
            };
            let a = assess(&facts, &requirements);
            node.tier = a.tier;
            node.tier_rule = a.rule;
            node.tier_why = a.why;
            node.runs_in = symbiont_sandbox::tier_backend(a.tier);
        }
    }

    /// The tier of the aggregation of `lane`.
    pub fn aggregate_tier(&self, lane: Lane) -> u8 {
        self.nodes
            .iter()
            .find(|n| n.op == "aggregate" && n.lane == Some(lane.name()))
            .map_or(0, |n| n.tier)
    }

    /// The plan as indented text, one operator per line.
    pub fn to_text(&self) -> String {
        let mut out = format!("plan of agent `{}`\n", self.agent);
        for n in &self.nodes {
            let inputs: Vec<String> = n.inputs.iter().map(|i| format!("#{i}")).collect();
            out.push_str(&format!("#{:<2} {:<9}", n.id, n.op));
            if let Some(lane) = n.lane {
                out.push_str(&format!(" [{lane}: {}]", n.lane_impl.unwrap_or("")));
            }
            out.push_str(&format!(" {}", n.label));
            if !inputs.is_empty() {
                out.push_str(&format!("  <- {}", inputs.join(", ")));
            }
            out.push_str(&format!(
                "\n     tier {}, {} (rule `{}`: {}); {}\n",
                n.tier, n.runs_in, n.tier_rule, n.tier_why, n.status
            ));
        }
        out
    }

    /// The plan as Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
            self.agent
        );
        for n in &self.nodes {
            let lane = n.lane.map_or(String::new(), |l| {
                format!("\\n[{l}: {}]", n.lane_impl.unwrap_or(""))
            });
            let style = if n.status == RUNS {
                ""
            } else {
                ", style=dashed"
            };
            out.push_str(&format!(
                "  n{} [label=\"{}{}\\n{}\\ntier {} ({})\"{style}];\n",
                n.id,
                n.op,
                lane,
                n.label.replace('\\', "\\\\").replace('"', "\\\""),
                n.tier,
                n.tier_rule
            ));
            for i in &n.inputs {
                out.push_str(&format!("  n{i} -> n{};\n", n.id));
            }
        }
        out.push_str("}\n");
        out
    }
}

fn class_of(lane: Lane) -> &'static str {
    match lane {
        Lane::Plaintext => "\"public\"",
        Lane::AesGcm => "\"confidential\"",
        Lane::Homomorphic => "\"restricted\"",
    }
}

fn output_shape(output: &Output) -> String {
    match output {
        Output::Scalar(_) => "one value".into(),
        Output::Struct { name, .. } => format!("a `{name}`"),
        Output::Groups(inner) => format!("one {} per group, by key", output_shape(inner)),
    }
}
