//! Runtime policy enforcement of a job: conditions on the principal, the
//! dataset and the records actually seen; suspension, and resumption with
//! a signed human approval.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use symbiont_crypto::{Approval, ApprovalRequest, AuditLog, EntryKind, Violation};

use crate::session::{Event, Observer};
use symbiont_operators::{
    Attributes, CompiledPolicies, Condition, Effect, Lane, Policy, PolicyValue,
};

/// What the policies' conditions say about a job before it starts.
#[derive(Debug, Default)]
pub(crate) struct RuntimeDecision {
    /// Violated conditions on the principal and the dataset: the job
    /// cannot start.
    pub(crate) before: Vec<Violation>,
    /// Per lane ([`Lane::ALL`] order): the conditions on the records seen
    /// that a record of the lane would violate.
    pub(crate) by_lane: [Vec<Violation>; 3],
}

/// `p` with only the conditions and requirements on the records
/// (`on_records`), or only the others.
fn split_conditions(p: &Policy, on_records: bool) -> Policy {
    let keep = |c: &Condition| c.is_on_records() == on_records;
    Policy {
        conditions: p.conditions.iter().filter(|c| keep(c)).cloned().collect(),
        require: p.require.iter().filter(|c| keep(c)).cloned().collect(),
        ..p.clone()
    }
}

/// Decides every action of the entry agent (and the agents it reaches;
/// `persist` too when the job writes its dataset out)
/// with its policies' conditions (the dataset's policies first): once for the job (principal, dataset
/// metadata, job context), and once per record class for the conditions on
/// `data_classification`. Each decision is an audit entry.
pub(crate) fn decide(
    spec: &crate::JobSpec,
    dataset: &[Policy],
    metadata: Option<&crate::Attrs>,
    log: &mut AuditLog,
    job: u64,
) -> Result<RuntimeDecision> {
    let (program, query, principal) = (&spec.program, &spec.query, &spec.principal.attributes);
    let persist = spec.persist_encrypted.is_some();
    let defined =
        symbiont_dsl::policies(program).map_err(|_| anyhow::anyhow!("invalid policies"))?;
    // The resource as the dataset's metadata and the job say it; what the
    // runner asserts beyond that (`--resource`) apart.
    let mut resource = metadata.cloned().unwrap_or_default();
    resource.extend(symbiont_dsl::context_with_lane(Some(query.min_lane)));
    // The job's compute stages run in at least the tiers required.
    resource.extend(symbiont_dsl::context_with_tiers(&query.tier_requirements));
    let mut out = RuntimeDecision::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut actions = symbiont_dsl::actions_of(program, &query.agent);
    // Writing the dataset out (`--persist-encrypted`): the entry agent's
    // action `persist`, where it reads its input.
    if persist
        && let Some(read) = actions
            .iter()
            .find(|a| a.agent == query.agent && a.name == "read")
            .cloned()
    {
        actions.push(symbiont_dsl::Action {
            name: "persist",
            ..read
        });
    }
    for action in actions {
        if !seen.insert((action.name, action.policies.clone())) {
            continue;
        }
        let applicable: Vec<Policy> = dataset
            .iter()
            .cloned()
            .chain(
                action
                    .policies
                    .iter()
                    .filter_map(|n| defined.get(n).cloned()),
            )
            .collect();
        let violation = |r: &symbiont_operators::Reason, class: Option<Lane>| Violation {
            action: action.name.to_owned(),
            agent: action.agent.clone(),
            policy: r.policy.clone(),
            rule: r.rule.to_owned(),
            detail: r.detail.clone(),
            class: class.map(|l| l.class().to_owned()),
        };
        // The job: every condition but those on the records.
        let job_policies: Vec<Policy> = applicable
            .iter()
            .map(|p| split_conditions(p, false))
            .collect();
        let decision = CompiledPolicies::compile(&job_policies)?.decide(
            action.name,
            &Attributes {
                principal,
                resource: &resource,
                asserted: &spec.resource,
                record: &Default::default(),
            },
        );
        let mut by_class = serde_json::Map::new();
        if decision.effect == Effect::Deny {
            out.before
                .extend(decision.reasons.iter().map(|r| violation(r, None)));
        }
        // The records: each class they may have, under the conditions on
        // the records alone, whatever the job's decision (an approval that
        // overrides the job's violations must not lift them too).
        {
            let on_records: Vec<Policy> = applicable
                .iter()
                .map(|p| split_conditions(p, true))
                .collect();
            let compiled = CompiledPolicies::compile(&on_records)?;
            for lane in Lane::ALL {
                let record = std::collections::BTreeMap::from([(
                    "class".to_owned(),
                    PolicyValue::Str(lane.class().to_owned()),
                )]);
                let d = compiled.decide(
                    action.name,
                    &Attributes {
                        principal,
                        resource: &resource,
                        asserted: &spec.resource,
                        record: &record,
                    },
                );
                by_class.insert(lane.class().to_owned(), serde_json::to_value(d.effect)?);
                if d.effect == Effect::Deny {
                    out.by_lane[lane.index()]
                        .extend(d.reasons.iter().map(|r| violation(r, Some(lane))));
                }
            }
        }
        log.append(
            EntryKind::PolicyDecision,
            serde_json::json!({
                "job": job,
                "action": action.name,
                "agent": action.agent,
                "policies": applicable.iter().map(|p| &p.name).collect::<Vec<_>>(),
                "decision": decision.effect,
                "reasons": decision.reasons,
                "conflicts": decision.conflicts,
                "by_record_class": by_class,
            }),
        )?;
    }
    Ok(out)
}

/// A verified approval.
pub(crate) struct Approved {
    pub(crate) approval: Approval,
}

impl Approved {
    /// Whether it overrides `v`.
    pub(crate) fn covers(&self, v: &Violation) -> bool {
        self.approval.overrides.contains(v)
    }
}

/// The violations an approval does not override.
pub(crate) fn uncovered(violations: &[Violation], approved: Option<&Approved>) -> Vec<Violation> {
    violations
        .iter()
        .filter(|v| !approved.is_some_and(|a| a.covers(v)))
        .cloned()
        .collect()
}

fn describe(v: &Violation) -> String {
    let class = v
        .class
        .as_ref()
        .map_or(String::new(), |c| format!(" (records classified {c})"));
    format!(
        "`{}` in agent `{}`: policy `{}`, `{}`: {}{class}",
        v.action, v.agent, v.policy, v.rule, v.detail
    )
}

/// Suspends the job: writes the approval request a human can sign into
/// `requests`, audits the suspension, and says what was violated and how
/// to resume. Returns the request's path.
pub(crate) fn suspend(
    log: &mut AuditLog,
    job: u64,
    stage: serde_json::Value,
    request: ApprovalRequest,
    requests: &Path,
    observer: &mut dyn Observer,
) -> Result<PathBuf> {
    std::fs::create_dir_all(requests)
        .with_context(|| format!("cannot create {}", requests.display()))?;
    let path = request_file(requests, &request)?;
    crate::write_new(
        &path,
        (serde_json::to_string_pretty(&request)? + "\n").as_bytes(),
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    log.append(
        EntryKind::StageSuspended,
        serde_json::json!({
            "job": job,
            "stage": stage,
            "violations": request.overrides,
            "request": path.display().to_string(),
        }),
    )?;
    log.append(
        EntryKind::JobEnd,
        serde_json::json!({"job": job, "status": "suspended"}),
    )?;
    log.checkpoint()?;
    let mut text = format!("job {job} suspended: policy conditions violated:");
    for v in &request.overrides {
        text.push_str(&format!("\n  {}", describe(v)));
    }
    observer.event(Event::Notice(text));
    observer.event(Event::Notice(format!(
        "to resume, an approver signs the request: `symbi approve {} --approver NAME --key KEY --reason TEXT --out APPROVAL`, then run again with `--override-approval APPROVAL`",
        path.display()
    )));
    Ok(path)
}

/// Where a suspended job's request is kept: named by its job number and
/// its digest, so that jobs of different logs never share a file.
fn request_file(requests: &Path, request: &ApprovalRequest) -> Result<PathBuf> {
    let digest = crate::digest(&serde_json::to_vec(request)?);
    Ok(requests.join(format!(
        "job-{}-{}.json",
        request.suspended_job,
        &digest[..16]
    )))
}

/// Verifies `--override-approval FILE` for this job and audits it: the
/// approval (or its refusal) is in the log, checkpointed, before anything
/// runs under it; if it cannot be written, the job fails (`Err`).
pub(crate) fn load_approval(
    path: &Path,
    keystore: &Path,
    requests: &Path,
    job_request: &ApprovalRequest,
    log: &mut AuditLog,
    job: u64,
    observer: &mut dyn Observer,
) -> anyhow::Result<std::result::Result<Approved, String>> {
    match symbiont_crypto::verify_approval(
        path,
        keystore,
        job_request,
        std::time::SystemTime::now(),
    ) {
        Ok((approval, key)) => {
            // Single-use: an approval the log shows in use by an earlier
            // job is refused (it would otherwise override again, for any
            // run of the same program over the same dataset, until it
            // expires).
            let id = crate::digest(&serde_json::to_vec(&approval)?);
            // Bound to the run: the request the suspended job wrote, with
            // every field the approval binds; single-use: one resumption
            // per suspended run, marked by an exclusive create (whatever
            // audit log the runner names).
            let request = ApprovalRequest {
                program_sha256: approval.program_sha256.clone(),
                agent: approval.agent.clone(),
                dataset: approval.dataset.clone(),
                input_sha256: approval.input_sha256.clone(),
                principal: approval.principal.clone(),
                suspended_job: approval.suspended_job,
                overrides: Vec::new(),
            };
            let written = std::fs::read_dir(requests)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| {
                        n.to_string_lossy()
                            .starts_with(&format!("job-{}-", approval.suspended_job))
                    }) && p.extension().is_some_and(|x| x == "json")
                })
                .find_map(|p| {
                    let r: ApprovalRequest =
                        serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                    (ApprovalRequest {
                        overrides: Vec::new(),
                        ..r.clone()
                    } == request)
                        .then_some((p, r))
                });
            let refused = match &written {
                None => Some(format!(
                    "{}: no suspended run {} of this job is on record in {} (an approval resumes the run it was signed for)",
                    path.display(),
                    approval.suspended_job,
                    requests.display()
                )),
                Some((_, r)) if !approval.overrides.iter().all(|v| r.overrides.contains(v)) => {
                    Some(format!(
                        "{}: it overrides violations job {} was not suspended for",
                        path.display(),
                        approval.suspended_job
                    ))
                }
                Some((file, _)) if file.with_extension("used").exists() => Some(format!(
                    "{}: job {} was already resumed (an approval is single-use: ask for a new one)",
                    path.display(),
                    approval.suspended_job
                )),
                Some(_) => None,
            };
            if let Some(why) = refused {
                log.append(
                    EntryKind::Approval,
                    serde_json::json!({"job": job, "file": path.display().to_string(), "refused": why}),
                )?;
                return Ok(Err(why));
            }
            log.append(
                EntryKind::Approval,
                serde_json::json!({
                    "job": job,
                    "file": path.display().to_string(),
                    "approval_sha256": id,
                    "approver": approval.approver,
                    "key": key,
                    "reason": approval.reason,
                    "expires": approval.expires,
                    "overrides": approval.overrides,
                }),
            )?;
            log.checkpoint()?;
            // Used, once its entry is in the log: an exclusive create, so
            // that two jobs racing with one approval cannot both run.
            let (file, _) = written.expect("checked above");
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file.with_extension("used"))
                .with_context(|| {
                    format!(
                        "{}: job {} is being resumed by another job",
                        path.display(),
                        approval.suspended_job
                    )
                })?;
            observer.event(Event::Notice(format!(
                "approval by {} ({key}) overrides {} violation(s): {}",
                approval.approver,
                approval.overrides.len(),
                approval.reason
            )));
            Ok(Ok(Approved { approval }))
        }
        Err(e) => {
            log.append(
                EntryKind::Approval,
                serde_json::json!({"job": job, "file": path.display().to_string(), "refused": e.to_string()}),
            )?;
            Ok(Err(e.to_string()))
        }
    }
}
