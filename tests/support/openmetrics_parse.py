"""Parses an OpenMetrics exposition from stdin with prometheus_client's
OpenMetrics parser (an implementation independent of the crate) and prints
its metric families as JSON. Exits 1 with the parser's error on any error.

Used by tests/support/openmetrics.rs; scripts/test.sh installs
prometheus_client into a virtual environment under the target directory.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def number(v):
    v = float(v)
    return v if math.isfinite(v) else repr(v)


def sample(s):
    exemplar = None
    if s.exemplar is not None:
        exemplar = {
            "labels": s.exemplar.labels,
            "value": number(s.exemplar.value),
            "timestamp": None if s.exemplar.timestamp is None else float(s.exemplar.timestamp),
        }
    return {"name": s.name, "labels": s.labels, "value": number(s.value), "exemplar": exemplar}


def main():
    text = sys.stdin.read()
    try:
        families = [
            {
                "name": f.name,
                "type": f.type,
                "unit": f.unit,
                "help": f.documentation,
                "samples": [sample(s) for s in f.samples],
            }
            for f in text_string_to_metric_families(text)
        ]
    except Exception as e:  # the parser raises ValueError, and others on odd input
        print(f"OpenMetrics parse error: {e!r}", file=sys.stderr)
        sys.exit(1)
    json.dump(families, sys.stdout)


main()
