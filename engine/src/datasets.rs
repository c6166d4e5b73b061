//! The sample-dataset generator: patient records with the columns of
//! `examples/data/patients.csv`, deterministic for a seed, written row by
//! row (constant memory for any row count).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const FIRST: [&str; 16] = [
    "Ines", "Liam", "Maya", "Noah", "Aiko", "Omar", "Lena", "Ravi", "Sofia", "Jonas", "Amara",
    "Mateo", "Chloe", "Kenji", "Zara", "Elias",
];
const LAST: [&str; 16] = [
    "Muller", "Nguyen", "Smith", "Silva", "Kowalski", "Haddad", "Rossi", "Okafor", "Tanaka",
    "Larsen", "Garcia", "Novak", "Dubois", "Khan", "Ivanova", "Berg",
];
/// Diagnoses with weights roughly those of the sample file.
const DIAGNOSES: [(&str, u32); 9] = [
    ("checkup", 425),
    ("hypertension", 348),
    ("diabetes", 264),
    ("influenza", 241),
    ("asthma", 194),
    ("depression", 177),
    ("fracture", 172),
    ("oncology", 100),
    ("HIV", 79),
];

/// The CSV header the generator writes.
pub const PATIENTS_HEADER: &str =
    "patient_id,name,ssn,email,age,sex,zip,diagnosis,cost_cents,visits";

/// Writes a header and `rows` patient records generated from `seed`.
pub fn generate_patients(rows: u64, seed: u64, out: &mut impl Write) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let total_weight: u32 = DIAGNOSES.iter().map(|(_, w)| w).sum();
    writeln!(out, "{PATIENTS_HEADER}")?;
    for i in 1..=rows {
        let first = FIRST[rng.random_range(0..FIRST.len())];
        let last = LAST[rng.random_range(0..LAST.len())];
        // About a quarter of records carry an SSN (some malformed, as real
        // data does), two thirds an e-mail address.
        let ssn = match rng.random_range(0..100) {
            0..20 => format!(
                "{:03}-{:02}-{:04}",
                rng.random_range(1..900),
                rng.random_range(1..100),
                rng.random_range(1..10000)
            ),
            20..25 => format!(
                "{:03}-00-{:04}",
                rng.random_range(0..1000),
                rng.random_range(0..10000)
            ),
            _ => String::new(),
        };
        let email = if rng.random_range(0..3) < 2 {
            format!(
                "{}.{}{}@example.org",
                first.to_lowercase(),
                last.to_lowercase(),
                rng.random_range(0..1000)
            )
        } else {
            String::new()
        };
        let mut pick = rng.random_range(0..total_weight);
        let diagnosis = DIAGNOSES
            .iter()
            .find(|(_, w)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map_or("checkup", |(d, _)| d);
        writeln!(
            out,
            "P{i:07},{first} {last},{ssn},{email},{},{},{:05},{diagnosis},{},{}",
            rng.random_range(0..100),
            if rng.random_bool(0.5) { "F" } else { "M" },
            rng.random_range(10000..100000),
            rng.random_range(10_000..5_000_000),
            rng.random_range(1..41),
        )?;
    }
    Ok(())
}

/// [`generate_patients`] into the file at `out` (created or truncated),
/// or to stdout.
pub fn write_patients(rows: u64, seed: u64, out: Option<&Path>) -> Result<()> {
    let mut w: std::io::BufWriter<Box<dyn Write>> = std::io::BufWriter::new(match out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    });
    generate_patients(rows, seed, &mut w)?;
    w.flush()?;
    Ok(())
}
