//! A job's plan drawn as SVG, for `explain --format svg` and pages that
//! show the dataflow.

use std::io::Write;

use anyhow::{Context, Result};
use symbiont_operators::Plan;

/// `plan` as SVG, drawn by graphviz's `dot` from [`Plan::to_dot`].
pub fn plan_svg(plan: &Plan) -> Result<String> {
    let mut child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("`--format svg` needs graphviz's `dot` (apt-get install graphviz); `--format dot` prints its input")?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(plan.to_dot().as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "graphviz `dot` failed");
    String::from_utf8(out.stdout).context("graphviz `dot` printed non-UTF-8")
}
