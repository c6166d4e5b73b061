//! The plan of a query: the graph `symbi explain` shows and the engine
//! builds, node by node ([`PlanStep`]): each node is one dataflow operator
//! or one stage beside the dataflow.
//!
//! Every node has a lane (for the per-lane branches) and a sandbox tier,
//! given by the risk table ([`crate::risk`]) from what the node sees,
//! whether it decrypts, whether it runs the program's code and what the
//! policies require, with the rule that chose it. A node that runs only
//! with a flag (`commit`, `prove`: `--bundle`; `persist`:
//! `--persist-encrypted`) says so in its status.

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

/// What a plan node is in the job: the engine builds the dataflow by one
/// loop over the plan, matching each node's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanStep {
    /// The input: rows read, parsed and validated into typed records.
    Source,
    /// Keeps the attested fields' values for the dataset commitment.
    Commit,
    /// Gives each record its lane, sealing or packing as the lane needs.
    Classify,
    /// Splits the classified stream by lane; holds a forbidden lane's.
    Route,
    /// Writes the classified records into the persisted dataset.
    Persist,
    /// The additive path's ingestion: packs and encrypts a lane's records.
    Encrypt(Lane),
    /// A lane's partial aggregates: an operator in the job's process, or
    /// a stage (a sandbox, or a compute stage on ciphertexts).
    Aggregate(Lane),
    /// The key holder's decryption of a lane's results.
    Decrypt(Lane),
    /// Consolidates every lane's partials, the stages' answers included.
    Merge,
    /// The Groth16 proofs of the attested results.
    Prove,
    /// Collects the merged partials and writes the result.
    Sink,
}

impl PlanStep {
    /// The operator's name (`op` in the plan, the audit log and
    /// `_meta.tiers`).
    pub fn op(self) -> &'static str {
        match self {
            PlanStep::Source => "source",
            PlanStep::Commit => "commit",
            PlanStep::Classify => "classify",
            PlanStep::Route => "route",
            PlanStep::Persist => "persist",
            PlanStep::Encrypt(_) => "encrypt",
            PlanStep::Aggregate(_) => "aggregate",
            PlanStep::Decrypt(_) => "decrypt",
            PlanStep::Merge => "merge",
            PlanStep::Prove => "prove",
            PlanStep::Sink => "sink",
        }
    }

    /// The lane of a per-lane step.
    pub fn lane(self) -> Option<Lane> {
        match self {
            PlanStep::Encrypt(l) | PlanStep::Aggregate(l) | PlanStep::Decrypt(l) => Some(l),
            _ => None,
        }
    }
}

/// One operator of the plan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanNode {
    /// Index in [`Plan::nodes`].
    pub id: usize,
    /// The operator: `source`, `commit`, `classify`, `route`, `persist`,
    /// `encrypt`, `aggregate`, `decrypt`, `merge`, `prove`, `sink`
    /// ([`PlanStep::op`]).
    pub op: &'static str,
    /// What the engine builds for it.
    #[serde(skip)]
    pub step: PlanStep,
    /// What it does, in one line.
    pub label: String,
    /// The lane of a per-lane operator.
    pub lane: Option<&'static str>,
    /// How that lane is implemented.
    pub lane_impl: Option<&'static str>,
    /// `dataflow operator` (in every worker's timely dataflow) or `stage`
    /// (outside the dataflow: a sandbox, a compute stage on ciphertexts,
    /// the key holder, the prover; fed by the dataflow, its answers enter
    /// it at merge).
    pub runs_as: &'static str,
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
/// The status of the persisting operator.
const WITH_PERSIST: &str = "runs with --persist-encrypted";
const OPERATOR: &str = "dataflow operator";
const STAGE: &str = "stage";

impl PlanNode {
    /// Whether the operator runs in a job, given whether the job attests
    /// (`--bundle`), not persisting its input.
    pub fn runs(&self, bundle: bool) -> bool {
        self.runs_in_job(bundle, false)
    }

    /// Whether the operator runs in a job, given whether it attests
    /// (`--bundle`) and persists its input (`--persist-encrypted`): what
    /// the job builds, audits and reports in `_meta.tiers`.
    pub fn runs_in_job(&self, bundle: bool, persist: bool) -> bool {
        self.status == RUNS
            || (bundle && self.status == WITH_BUNDLE)
            || (persist && self.status == WITH_PERSIST)
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
        let mut add = |step: PlanStep, label: String, status, inputs: Vec<usize>| {
            let id = nodes.len();
            let lane = step.lane();
            nodes.push(PlanNode {
                id,
                op: step.op(),
                step,
                label,
                lane: lane.map(Lane::name),
                lane_impl: lane.map(|l| LaneImpl::for_input(l, input).name()),
                runs_as: OPERATOR,
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
            PlanStep::Source,
            format!(
                "`{}` ({}, --input {}=PATH): rows read and parsed as {} {{ {} }}; a row that does not parse is an error naming its line",
                query.input,
                format.unwrap_or("csv, ndjson, parquet or arrow-ipc by extension"),
                query.input,
                schema.name,
                fields.join(", ")
            ),
            RUNS,
            vec![],
        );
        let commit = add(
            PlanStep::Commit,
            "keeps the attested fields of each record, in order, for the dataset commitment (Poseidon, a salt per chunk; signed and logged once the source has read everything)".into(),
            WITH_BUNDLE,
            vec![source],
        );
        let classify = add(
            PlanStep::Classify,
            format!(
                "{}; confidential records sealed per batch under the dataset's data key{}{}",
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
                match input {
                    InputKind::File =>
                        ", restricted ones kept for the homomorphic lane's encryption",
                    InputKind::Store => ", and so are restricted ones",
                    InputKind::StoreTfhe => "",
                },
                if stored {
                    "; a stored dataset's sealed batches keep their lanes (not opened)"
                } else {
                    ""
                }
            ),
            RUNS,
            vec![commit],
        );
        let persist = add(
            PlanStep::Persist,
            "writes the classified records into the persisted dataset, encrypted lanes sealed (a lane a policy forbids is not written)".into(),
            WITH_PERSIST,
            vec![classify],
        );
        let route = add(
            PlanStep::Route,
            "each record or sealed batch to its lane's aggregation; a lane a policy forbids is held here (never opened) and suspends the job".into(),
            RUNS,
            vec![persist],
        );
        let aggregates: Vec<String> = query.aggregates.iter().map(|a| a.label.clone()).collect();
        let grouping = match &query.grouping {
            Some(_) => "per group, ",
            None => "",
        };
        let mut lane_outputs = Vec::new();
        for lane in Lane::ALL {
            let sealed = lane != Lane::Plaintext;
            // The homomorphic lane's TFHE paths: compute on ciphertexts,
            // then the key holder decrypts (the labels say which path each
            // aggregate takes).
            let tfhe = match (lane, input) {
                (Lane::Homomorphic, InputKind::File) => {
                    let encrypt = add(
                        PlanStep::Encrypt(lane),
                        "filters, maps and group keys evaluated here, values packed 2048 per list and encrypted under the TFHE public key; each full list goes to the compute stage at once, the lane's counts and group keys to merge".into(),
                        RUNS,
                        vec![route],
                    );
                    lane_outputs.push(encrypt);
                    Some((
                        encrypt,
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
                    ))
                }
                (Lane::Homomorphic, InputKind::StoreTfhe) => {
                    let compiled = crate::programmable::compile(query);
                    Some((
                        route,
                        "reads the stored dataset's tfhe.bin (one compact list of FheInt64 per record; its sealed batches are not read), then compares, selects and aggregates the ciphertexts with the server key, in parallel over the cores, holding no client key; ".to_owned(),
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
            if let Some((from, compute, decrypt, paths)) = tfhe {
                let compute = add(
                    PlanStep::Aggregate(lane),
                    format!("{compute}{}", paths.join("; ")),
                    RUNS,
                    vec![from],
                );
                lane_outputs.push(add(
                    PlanStep::Decrypt(lane),
                    decrypt.into(),
                    RUNS,
                    vec![compute],
                ));
                continue;
            }
            let label = format!(
                "records classified {}: {}partial {grouping}{}",
                class_of(lane),
                if sealed {
                    "each sealed batch opened into a locked, zeroized buffer; "
                } else {
                    ""
                },
                aggregates.join("; ")
            );
            lane_outputs.push(add(PlanStep::Aggregate(lane), label, RUNS, vec![route]));
        }
        let merge = add(
            PlanStep::Merge,
            "consolidates the lanes' partials per epoch across the workers: the in-process aggregates' and the stages' answers, which enter the dataflow at the end of the epoch".into(),
            RUNS,
            lane_outputs,
        );
        let mut last = merge;
        if !query.prove.is_empty() {
            last = add(
                PlanStep::Prove,
                format!("Groth16 proofs of {}", query.prove.join(", ")),
                WITH_BUNDLE,
                vec![merge],
            );
        }
        add(
            PlanStep::Sink,
            format!(
                "sums each aggregate over its lanes into {}, written to stdout (or --out)",
                output_shape(&query.output)
            ),
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
            let facts = match node.step {
                PlanStep::Source
                | PlanStep::Commit
                | PlanStep::Classify
                | PlanStep::Route
                | PlanStep::Persist
                | PlanStep::Encrypt(_)
                | PlanStep::Decrypt(_) => StageFacts {
                    boundary: Boundary::Owner,
                    sees: node.step.lane().map_or(Sees::Restricted, sees_of),
                    decrypts: false,
                    user_code: node.step == PlanStep::Classify && query.classifier.is_some(),
                    reachable: true,
                },
                PlanStep::Aggregate(lane) => {
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
            // What runs beside the dataflow: a sandbox, the homomorphic
            // lane's compute stages, the key holder, the prover.
            node.runs_as = match node.step {
                PlanStep::Aggregate(Lane::Homomorphic) if input != InputKind::Store => STAGE,
                PlanStep::Aggregate(_) if a.tier > 0 => STAGE,
                PlanStep::Decrypt(_) | PlanStep::Prove => STAGE,
                _ => OPERATOR,
            };
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
            .find(|n| n.step == PlanStep::Aggregate(lane))
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
                "\n     {}, tier {}, {} (rule `{}`: {}); {}\n",
                n.runs_as, n.tier, n.runs_in, n.tier_rule, n.tier_why, n.status
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
