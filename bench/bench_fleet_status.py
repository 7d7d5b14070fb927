"""How long ``status`` of N send engines takes, against ``docker stats --no-stream`` on them.

    .venv/bin/python bench/bench_fleet_status.py [--engines N] [--runs N] [--image IMAGE]

Starts N engines (default 10) of a fleet of its own with a fresh PostgreSQL database on
127.0.0.1:5432 (trusting local connections), timing scale 0 -> 5 (target: well under
15 s once the image exists) and 5 -> N, waits until each engine beats, then times

1. ``ContainerFleet.status()`` in this process: one probe in every container at once (its
   supervisord programs and its cgroup's CPU time and memory), plus the heartbeat query
   (median of ``--runs``);
2. ``docker stats --no-stream`` on the same containers (the Docker CLI, median of ``--runs``),
   which samples CPU and memory only.

Target: status of 10 engines well under 2 s. Figures only: the tests make no timing
assertions. The engines and the database are removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

from sqlalchemy import create_engine, text

from app.engine.docker_api import connect
from app.engine.fleet import DEFAULT_IMAGE, POOL_SIZE, FleetSettings
from app.engine.fleet_containers import ContainerFleet
from app.engine.fleet_samples import fresh_consumers
from app.engine.fleet_secrets import EngineSecrets
from app.models.database import Database
from app.services.vault import generate_vault_key

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def median_seconds(action: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    args = parser.parse_args()

    name = f"bench_fleet_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    database = Database(url)
    client = connect(max_pool_size=POOL_SIZE)
    with tempfile.TemporaryDirectory() as folder:
        fleet = ContainerFleet(
            client,
            FleetSettings(fleet=name.replace("_", "-"), image=args.image),
            database=database,
            secrets=EngineSecrets(url, generate_vault_key()),
            secrets_folder=Path(folder) / "secrets",
            progress=print,
        )
        try:
            started = time.perf_counter()
            fleet.scale(5)
            print(
                f"scale 0 -> 5 engines: {time.perf_counter() - started:.1f} s "
                "(target: well under 15 s)"
            )
            started = time.perf_counter()
            fleet.scale(args.engines)
            print(f"scale 5 -> {args.engines} engines: {time.perf_counter() - started:.1f} s")
            deadline = time.monotonic() + 180
            while fresh_consumers(database) < args.engines and time.monotonic() < deadline:
                time.sleep(1)
            print(f"engines beating: {fresh_consumers(database)} of {args.engines}")
            ids = [c.container.id for c in fleet.containers()]
            status = median_seconds(fleet.status, args.runs)
            cli = median_seconds(
                lambda: subprocess.run(
                    ["docker", "stats", "--no-stream", *ids], capture_output=True, check=True
                ),
                args.runs,
            )
            print(f"status of {args.engines} engines:          {status:.2f} s (median)")
            print(f"docker stats --no-stream on them:  {cli:.2f} s (median)")
            print(f"ratio docker stats / status:       {cli / status:.2f}")
        finally:
            fleet.scale(0)
            database.dispose()
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
