"""The efficiency profiles the gateway's router reads, and how they learn.

At start every pool whose model the hardware catalog knows gets a
``modelled`` profile (``fleet.profiles``, the simulator's code); a
profile file from ``hetserve calibrate`` in the fleet's ``profiles``
directory replaces it; every finished request then updates its cell online.
"""

from __future__ import annotations

import logging
from pathlib import Path

from routing import EfficiencyProfile, ProfileBook
from fleet.profiles import fleet_profiles, observe_finished

from fleet.config import FleetConfig
from gateway.service import Finished

log = logging.getLogger("hetserve.profiles")


class ProfileStore:
    def __init__(self, fleet: FleetConfig, base_dir: Path | None = None):
        self.profiles: dict[str, EfficiencyProfile] = fleet_profiles(fleet.pools)
        if fleet.profiles:
            directory = Path(fleet.profiles)
            if base_dir is not None and not directory.is_absolute():
                directory = base_dir / directory
            if directory.is_dir():
                book = ProfileBook.load_dir(directory)
                known = {p.name for p in fleet.pools}
                for name in book:
                    if name in known:
                        self.profiles[name] = book[name]
                log.info("loaded calibrated profiles for %s from %s", sorted(set(book) & known), directory)
            else:
                log.warning("profiles directory %s does not exist: using modelled profiles", directory)

    def observe(self, f: Finished) -> None:
        profile = self.profiles.get(f.pool)
        if profile is None or profile.model != f.shape.model:
            return
        per_seq_out = max(1, f.output_tokens // max(f.shape.sequences, 1))
        observe_finished(
            profile,
            f.batch,
            f.shape.prompt_tokens + per_seq_out,
            ttft_s=f.ttft_s,
            e2e_s=f.e2e_s,
            output_tokens=per_seq_out,
            energy_j=f.energy_j / max(f.shape.sequences, 1) if f.energy_j else None,
        )

    def describe(self) -> dict[str, dict]:
        return {name: p.to_dict() for name, p in self.profiles.items()}
