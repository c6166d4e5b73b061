//! `symbi approve`: an approver signs a suspended job's request.

use std::path::Path;

use anyhow::{Context, Result};
use symbiont_crypto::ApprovalRequest;

/// Where `symbi approve` reads the request.
fn read_request(path: &Path) -> Result<ApprovalRequest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not an approval request", path.display()))
}

/// `symbi approve REQUEST --approver NAME --key KEY --reason TEXT [--expires D] --out FILE`.
pub(crate) fn approve(
    request: &Path,
    approver: &str,
    key: &Path,
    reason: &str,
    expires: std::time::Duration,
    out: &Path,
) -> Result<u8> {
    let req = read_request(request)?;
    let text = symbiont_crypto::sign_approval(
        approver,
        key,
        req.clone(),
        reason,
        std::time::SystemTime::now() + expires,
    )?;
    symbiont_engine::write_new(out, text.as_bytes())
        .with_context(|| format!("cannot create {} (it must not exist)", out.display()))?;
    eprintln!(
        "symbi: {approver} approved {} override(s) for suspended job {}: agent `{}` of program sha256:{}, dataset `{}` (input sha256:{}), principal {}; wrote {}",
        req.overrides.len(),
        req.suspended_job,
        req.agent,
        req.program_sha256,
        req.dataset,
        req.input_sha256,
        req.principal,
        out.display()
    );
    for v in &req.overrides {
        eprintln!(
            "  overrides `{}` in `{}`: policy `{}`, `{}`: {}",
            v.action, v.agent, v.policy, v.rule, v.detail
        );
    }
    Ok(crate::exit::OK)
}
