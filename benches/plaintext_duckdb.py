"""The plaintext pipeline (benches/plaintext_1m.symbi) and the same query in
DuckDB, timed one run at a time: shared by benches/plaintext_vs_duckdb.sh
and benches/plaintext_before_after.sh."""
import json
import subprocess
import time

import duckdb


def time_symbi(symbi, data):
    """One whole `symbi run` (2 workers): seconds and the result's value."""
    cmd = [symbi, "run", "benches/plaintext_1m.symbi", "--input", f"patients={data}",
           "--format", "json", "--workers", "2"]
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True).stdout
    return time.perf_counter() - t, json.loads(out)["value"]


class DuckDb:
    """The same query in DuckDB, in process on 2 threads."""

    def __init__(self, data):
        self.con = duckdb.connect()
        self.con.execute("SET threads TO 2")
        self.query = f"""
SELECT diagnosis, count(*) AS patients,
       coalesce(sum(cost_cents) FILTER (WHERE age >= 65), 0) AS senior_cost_cents
FROM read_csv('{data}', header = true, columns = {{
    'patient_id': 'VARCHAR', 'name': 'VARCHAR', 'ssn': 'VARCHAR', 'email': 'VARCHAR',
    'age': 'BIGINT', 'sex': 'VARCHAR', 'zip': 'VARCHAR', 'diagnosis': 'VARCHAR',
    'cost_cents': 'BIGINT', 'visits': 'BIGINT'}})
GROUP BY diagnosis ORDER BY diagnosis"""

    def time(self):
        """Seconds and the rows, as symbi's result shows them."""
        t = time.perf_counter()
        rows = self.con.execute(self.query).fetchall()
        return time.perf_counter() - t, [
            {"diagnosis": d, "patients": n, "senior_cost_cents": int(s)} for d, n, s in rows]


VERSION = duckdb.__version__
