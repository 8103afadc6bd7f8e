"""A live progress line on stderr (tqdm), or nothing."""

from __future__ import annotations

import sys

from tqdm import tqdm

from loadtests.result import RequestResult


class Progress:
    """Counts finished requests; shows errors as they happen. Disabled, it costs nothing."""

    def __init__(self, enabled: bool, total: int | None, label: str):
        self._errors = 0
        self._bar = (
            tqdm(total=total, desc=label, unit="req", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
            if enabled
            else None
        )

    def update(self, result: RequestResult) -> None:
        if self._bar is None:
            return
        if not result.ok:
            self._errors += 1
            self._bar.set_postfix_str(f"errors={self._errors}", refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
