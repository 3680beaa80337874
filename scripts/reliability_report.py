"""Turn the fault-injection suite's figures into the table of RELIABILITY.md.

    LANDCOVER_RELIABILITY_LOG=/tmp/rel.jsonl .venv/bin/python -m pytest -q tests/e2e/test_reliability.py
    python scripts/reliability_report.py /tmp/rel.jsonl
"""

import json
import sys

COLS = ("tiles_tried", "rows", "predicted", "error_rows", "lost", "duplicates")


def main(path: str) -> None:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    print("| case | " + " | ".join(c.replace("_", " ") for c in COLS) + " | error reasons | other figures |")
    print("|---|" + "---|" * (len(COLS) + 2))
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in r["reasons"].items()) or "–"
        other = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.items()
                          if k not in COLS + ("case", "reasons", "unexpected"))
        print(f"| {r['case']} | " + " | ".join(str(r[c]) for c in COLS) + f" | {reasons} | {other} |")


if __name__ == "__main__":
    main(sys.argv[1])
