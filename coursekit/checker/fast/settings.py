"""How compressed the fast mode's time is, per grade (the docs quote these: coursekit/docs/facts.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from coursekit.checker import checks


@dataclass
class FastSettings:
    """How compressed the scenario is. The defaults give G3's reference a verdict in about half a minute on 2 cores.

    The scenario's own clock is the retention: the busy runs go on until the shops
    have deleted rows a run loaded (`delete_after` after the shops started, plus 3 s).
    The rows the scenario updates are the last `update_window` - 5 s the shops made
    before they paused, so that window only has to hold a few ticks.
    """

    tick_interval: int = 1  # TICK_INTERVAL_SEC of the private shops
    update_window: int = 10  # UPDATE_NOT_OLDER_THAN_SEC of the private shops
    delete_after: int = 15  # DELETE_OLDER_THAN_SEC (the generator wants it above the update window)
    warmup: float = 3  # seconds of shop activity before the first run
    min_busy_runs: int = 1  # runs with the shops ticking between the source-down run and the end
    pause: float = 1  # seconds of shop activity between two busy runs
    null_share: float = 0.2  # of every column the shops leave empty at times
    run_timeout: float = 600
    concurrency: int = 2  # DAG folders run at once (several are graded side by side in the tests)
    # pg-shop-2's clock runs this far behind (its rows' created_at too): one watermark shared by both
    # shops then skips Istanbul's rows. 0 where a check compares created_at with the warehouse's clock (G4).
    shop_2_clock_behind: int = 900
    keep: bool = False  # keep the private databases for a look afterwards
    # orders shop-1 gets, while paused, that reference the customers it will create next (G4: a late
    # parent, so that a quarantine that re-audits has a held row to release, whatever the random ticks did)
    late_parent_rows: int = 0


def settings_for(plan: list[checks.Check], settings: FastSettings | None = None) -> FastSettings:
    """The settings a grade's plan is graded with.

    Write-Audit-Publish (G4): latency compares created_at with dds's clock, so no skewed clock; and
    slower ticks, so that orders extracted a few seconds after customers (dag.test runs one task at
    a time) do not reference many customers the run has not seen, which a WAP load rightly holds
    back, up to halting the batch (max_quarantine_share).
    """
    settings = settings or FastSettings()
    if any(getattr(check, "__name__", "") == "check_latency" for check in plan):
        # Longer windows and warm-up too, as before the others were shortened: under load, 3 s
        # of ticks left run 1 with a batch whose orders mostly referenced unseen customers.
        settings = replace(
            settings,
            shop_2_clock_behind=0,
            tick_interval=max(settings.tick_interval, 3),
            update_window=max(settings.update_window, 30),
            delete_after=max(settings.delete_after, 50),
            warmup=max(settings.warmup, 6),
        )
    if any(getattr(check, "__name__", "") == "check_released" for check in plan):
        settings = replace(settings, late_parent_rows=max(settings.late_parent_rows, 3))
    return settings
