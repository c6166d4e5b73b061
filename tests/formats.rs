//! NDJSON, Parquet and Arrow IPC inputs: the same program gives the same
//! result as over CSV; bad rows are named by line (row) and field.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

const PROGRAM: &str = "struct Visit { id: string, age: int, cost: int, ward: string }\n\
    struct Report { visits: int, seniors: int, cost: int, wards: int }\n\
    agent report(visits: Stream<Visit>) -> Report {\n\
        return Report { visits: count(visits), seniors: count(visits.filter(v => v.age >= 65)), cost: sum(visits.map(v => v.cost)), wards: count(visits.filter(v => v.ward == \"north\")) };\n\
    }\n";

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("symbi-formats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.symbi"), PROGRAM).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn run(&self, data: &str, extra: &[&str]) -> Output {
        let program = self.path("p.symbi");
        let input = format!("visits={}", self.path(data).display());
        Command::new(env!("CARGO_BIN_EXE_symbi"))
            .args(["run", program.to_str().unwrap(), "--input", &input])
            .args(extra)
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_DATA_HOME", self.path("data"))
            .output()
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn json(o: &Output) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const EXPECTED: (i64, i64, i64, i64) = (4, 2, 100, 2);

fn check(v: &serde_json::Value) {
    let got = (
        v["visits"].as_i64().unwrap(),
        v["seniors"].as_i64().unwrap(),
        v["cost"].as_i64().unwrap(),
        v["wards"].as_i64().unwrap(),
    );
    assert_eq!(got, EXPECTED, "{v}");
}

#[test]
fn csv_baseline() {
    let s = Scratch::new("csv");
    std::fs::write(
        s.path("v.csv"),
        "id,age,cost,ward\na,70,10,north\nb,30,20,south\nc,80,30,north\nd,10,40,east\n",
    )
    .unwrap();
    check(&json(&s.run("v.csv", &[])));
}

#[test]
fn ndjson_matches_csv_and_names_bad_lines() {
    let s = Scratch::new("ndjson");
    let good = "{\"id\":\"a\",\"age\":70,\"cost\":10,\"ward\":\"north\"}\n\
        {\"id\":\"b\",\"age\":30,\"cost\":20,\"ward\":\"south\",\"extra\":[1]}\n\
        \n\
        {\"ward\":\"north\",\"cost\":30,\"age\":80,\"id\":\"c\"}\n\
        {\"id\":\"d\",\"age\":10,\"cost\":40,\"ward\":\"east\"}\n";
    std::fs::write(s.path("v.ndjson"), good).unwrap();
    for workers in ["1", "2", "3"] {
        check(&json(&s.run("v.ndjson", &["--workers", workers])));
    }
    let bad = format!(
        "{good}{{\"id\":\"e\",\"age\":\"old\",\"cost\":1,\"ward\":\"x\"}}\n{{\"id\":\"f\",\"age\":1,\"ward\":\"x\"}}\nnot json\n{{\"id\":\"g\",\"age\":1.5,\"cost\":1,\"ward\":\"x\"}}\n"
    );
    std::fs::write(s.path("bad.jsonl"), &bad).unwrap();
    let o = s.run("bad.jsonl", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bad.jsonl:line 6: field `age`: expected int, found a string"),
        "{}",
        stderr(&o)
    );
    let q = s.path("q.ndjson");
    let on_error = format!("quarantine={}", q.display());
    let v = json(&s.run("bad.jsonl", &["--on-error", &on_error, "--workers", "2"]));
    check(&v);
    assert_eq!(v["_meta"]["quarantined"], 4);
    assert_eq!(v["_meta"]["rows"], 8);
    let lines: Vec<u64> = std::fs::read_to_string(&q)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lines, [6, 7, 8, 9]);
}

fn batch(cost: Vec<Option<i64>>, age_type: DataType) -> RecordBatch {
    let age: ArrayRef = match age_type {
        DataType::Int32 => Arc::new(Int32Array::from(
            vec![70, 30, 80, 10, 50][..cost.len()].to_vec(),
        )),
        _ => Arc::new(StringArray::from(
            vec!["70", "30", "80", "10", "50"][..cost.len()].to_vec(),
        )),
    };
    let n = cost.len();
    let schema = Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("age", age.data_type().clone(), false),
        Field::new("cost", DataType::Int64, true),
        Field::new("ward", DataType::LargeUtf8, false),
        Field::new("unused", DataType::Float64, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(
                vec!["a", "b", "c", "d", "e"][..n].to_vec(),
            )),
            age,
            Arc::new(Int64Array::from(cost)),
            Arc::new(LargeStringArray::from(
                vec!["north", "south", "north", "east", "west"][..n].to_vec(),
            )),
            Arc::new(arrow_array::Float64Array::from(vec![None; n])),
        ],
    )
    .unwrap()
}

fn write_parquet(path: &PathBuf, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

fn write_ipc(path: &PathBuf, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema()).unwrap();
    writer.write(batch).unwrap();
    writer.finish().unwrap();
}

#[test]
fn parquet_and_arrow_ipc_match_csv() {
    let s = Scratch::new("columnar");
    let good = batch(
        vec![Some(10), Some(20), Some(30), Some(40)],
        DataType::Int32,
    );
    write_parquet(&s.path("v.parquet"), &good);
    write_ipc(&s.path("v.arrow"), &good);
    for file in ["v.parquet", "v.arrow"] {
        for workers in ["1", "2"] {
            check(&json(&s.run(file, &["--workers", workers])));
        }
    }
}

#[test]
fn a_null_in_a_columnar_file_is_a_missing_value_of_its_row() {
    let s = Scratch::new("nulls");
    let with_null = batch(
        vec![Some(10), Some(20), Some(30), Some(40), None],
        DataType::Int32,
    );
    write_parquet(&s.path("n.parquet"), &with_null);
    let o = s.run("n.parquet", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("n.parquet:line 5: field `cost`: missing value"),
        "{}",
        stderr(&o)
    );
    let q = s.path("q.ndjson");
    let v = json(&s.run(
        "n.parquet",
        &["--on-error", &format!("quarantine={}", q.display())],
    ));
    check(&v);
    assert_eq!(v["_meta"]["quarantined"], 1);
}

#[test]
fn a_column_of_the_wrong_type_is_refused_before_the_job() {
    let s = Scratch::new("types");
    write_ipc(&s.path("t.arrow"), &batch(vec![Some(1)], DataType::Utf8));
    let o = s.run("t.arrow", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the column `age` holds Utf8, the field is int"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unknown_extension_is_refused() {
    let s = Scratch::new("ext");
    std::fs::write(s.path("v.txt"), "id,age,cost,ward\n").unwrap();
    let o = s.run("v.txt", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown format"), "{}", stderr(&o));
}

/// Issue 21, point 9: a line past `MAX_LINE` (16 MiB) in a CSV or NDJSON
/// input fails the job naming the file and the line, before the parser
/// holds it whole; bad-row quarantine does not swallow it.
#[test]
fn a_line_past_the_limit_fails_naming_it() {
    let s = Scratch::new("long-line");
    let long = "x".repeat(symbiont_operators::MAX_LINE + 1);
    std::fs::write(
        s.path("v.csv"),
        format!("id,age,cost,ward\na,70,10,north\n{long},1,1,x\nd,10,40,east\n"),
    )
    .unwrap();
    std::fs::write(
        s.path("v.ndjson"),
        format!(
            "{{\"id\":\"a\",\"age\":70,\"cost\":10,\"ward\":\"north\"}}\n{{\"id\":\"{long}\"}}\n"
        ),
    )
    .unwrap();
    for (file, line) in [("v.csv", 3), ("v.ndjson", 2)] {
        let q = format!("quarantine={}", s.path("q.ndjson").display());
        for extra in [&[][..], &["--on-error", &q]] {
            let o = s.run(file, extra);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            let err = stderr(&o);
            assert!(err.contains(file), "{err}");
            assert!(
                err.contains(&format!("line {line} is longer than 16777216 bytes")),
                "{err}"
            );
        }
    }
}
