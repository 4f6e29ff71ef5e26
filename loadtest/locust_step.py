"""One step of the step load, in its own process: Locust (driven through its Python API) runs N users
of loadtest/locustfile.py against HOST for exactly S seconds after they are all spawned, then writes
PREFIX.json (exact totals and the measured window: requests sent, requests the users' schedules meant
to send, answers compared with the reference answers), PREFIX_stats.csv, PREFIX_failures.csv, PREFIX.html.

Importing locust monkey-patches this whole process with gevent, so nothing else runs here.
`python -m loadtest.locust_step --host URL --users N --seconds S --prefix PATH`
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--prefix", type=Path, required=True)
    args = parser.parse_args(argv)

    import gevent
    from locust.env import Environment
    from locust.html import get_html_report
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    from loadtest import locustfile
    from loadtest.locustfile import SENTENCES_SOURCE, TranslatorUser

    environment = Environment(user_classes=[TranslatorUser], host=args.host)
    runner = environment.create_local_runner()
    runner.start(args.users, spawn_rate=max(args.users * 20, 1))
    if runner.spawning_greenlet is not None:
        runner.spawning_greenlet.join()
    # The window starts once every user runs, so each step measures its user count only.
    environment.stats.reset_all()
    locustfile.reset_tallies()
    began = time.monotonic()
    gevent.sleep(args.seconds)
    ended = time.monotonic()
    elapsed_s = ended - began
    sent = locustfile.SENT[0]
    runner.quit()  # requests still in flight are abandoned, not counted

    stats = environment.stats
    args.prefix.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "users": args.users,
        "elapsed_s": elapsed_s,
        "sentences": SENTENCES_SOURCE,
        "sent": sent,  # requests started in the window
        "scheduled": locustfile.scheduled_between(began, ended),  # ... that the schedules meant to start
        "latency_from": "schedule" if locustfile.USER_RPS > 0 else "send",
        "reference": locustfile.REFERENCES.tally(),
        "stats": stats.serialize_stats(),
        "errors": [{"name": e.name, "error": str(e.error), "occurrences": e.occurrences}
                   for e in stats.errors.values()],
        "exceptions": [{"count": e["count"], "msg": e["msg"]} for e in runner.exceptions.values()],
    }
    Path(f"{args.prefix}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    table = StatsCSV(environment, PERCENTILES_TO_REPORT)
    with open(f"{args.prefix}_stats.csv", "w", newline="", encoding="utf-8") as handle:
        table.requests_csv(csv.writer(handle))
    with open(f"{args.prefix}_failures.csv", "w", newline="", encoding="utf-8") as handle:
        table.failures_csv(csv.writer(handle))
    Path(f"{args.prefix}.html").write_text(get_html_report(environment), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
