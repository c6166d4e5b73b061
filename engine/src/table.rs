//! `symbi run --format table`: a result as a plain text table.

use crate::JobOutput;

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl JobOutput {
    /// The result as a plain text table: a struct as field/value rows, a
    /// list of structs as one row each, then the lane counts.
    pub fn table(&self) -> String {
        let output = self;
        let rows: Vec<Vec<String>> = match &output.value {
            serde_json::Value::Object(o) => {
                std::iter::once(vec!["field".to_owned(), "value".to_owned()])
                    .chain(o.iter().map(|(k, v)| vec![k.clone(), cell(v)]))
                    .collect()
            }
            serde_json::Value::Array(items) => {
                let header: Vec<String> = match items.first() {
                    Some(serde_json::Value::Object(o)) => o.keys().cloned().collect(),
                    _ => vec!["value".to_owned()],
                };
                std::iter::once(header.clone())
                    .chain(items.iter().map(|item| match item {
                        serde_json::Value::Object(o) => {
                            header.iter().map(|h| cell(&o[h])).collect()
                        }
                        other => vec![cell(other)],
                    }))
                    .collect()
            }
            other => vec![vec!["value".to_owned()], vec![cell(other)]],
        };
        let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
            .map(|c| {
                rows.iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (i, row) in rows.iter().enumerate() {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(s, w)| format!("{s:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
            if i == 0 {
                out.push_str(
                    &widths
                        .iter()
                        .map(|w| "-".repeat(*w))
                        .collect::<Vec<_>>()
                        .join("  "),
                );
                out.push('\n');
            }
        }
        let meta = output.meta();
        out.push_str(&format!("\nlanes: {}\n", meta["lanes"]));
        out.push_str(&format!("lane implementations: {}\n", meta["lane_impl"]));
        out.push_str(&format!(
            "rows: {}, quarantined: {}\n",
            output.rows, output.quarantined
        ));
        out
    }
}
