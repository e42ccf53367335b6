"""Write a City database (.mmdb, GeoLite2's layout) for `linkpulse bench ingest` with GeoIP on: no download.

It holds every network the bench's clicks come from (linkpulse.bench.seed.bench_networks: 50,000 /24s and
/48s, each with its country, a region and a city), and `--extra` random networks more, so the search tree
has a realistic size (a GeoLite2 City file holds a few million networks; lookups walk at most 24 or 48 levels
for an anonymised address whatever the size, so a few hundred thousand show the cost of a real file's shape).

    .venv/bin/python -m tests.bench.geoip_db /tmp/bench-city.mmdb [--extra 200000]
    LINKPULSE_GEOIP_DATABASE=/tmp/bench-city.mmdb .venv/bin/linkpulse bench ingest

`linkpulse bench` passes its environment to the services it starts, so the variable reaches ingest.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from tests.geoip_files import Place, write_city

from linkpulse.bench.seed import bench_networks


def places(extra: int, *, cities: int = 3000, regions: int = 40, seed: int = 5) -> dict[str, Place]:
    """Networks and their places: each network in one of `cities` cities (per country) drawn evenly, each city
    in one of `regions` regions. Evenly is the rollups' worst case: a link's clicks rarely share a city."""
    rng = random.Random(seed)

    def place(country: str) -> Place:
        city = rng.randrange(cities)
        return Place(country or "NL", f"R{city % regions}", "Region", f"City {city}")

    out: dict[str, Place] = {}
    while len(out) < extra:
        if rng.random() < 0.2:
            network = f"2a1{rng.randrange(10)}:{rng.randrange(65536):x}:{rng.randrange(65536):x}::/48"
        else:
            network = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24"
        out[network] = place(rng.choice(("US", "DE", "FR", "GB", "BR", "IN", "JP", "NL")))
    # The bench's own networks last: where a random one is the same, the bench's country wins.
    for ip, country in bench_networks():
        out[f"{ip}/48" if ":" in ip else f"{ip}/24"] = place(country)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path)
    parser.add_argument("--extra", type=int, default=200_000, help="random networks besides the bench's (200000)")
    parser.add_argument("--cities", type=int, default=3000, help="cities per country (3000)")
    parser.add_argument("--regions", type=int, default=40, help="regions per country (40)")
    args = parser.parse_args()
    started = time.monotonic()
    every = places(args.extra, cities=args.cities, regions=args.regions)
    write_city(args.path, every)
    size = args.path.stat().st_size
    print(f"{args.path}: {len(every):,} networks, {size / 1e6:.1f} MB, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
