"""Great Expectations (1.x) suites for warehouse tables, run on pandas frames.

GX's ephemeral context is built once per process: it is slow to create and holds no state
we need between validations.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

ISO_CURRENCY_REGEX = r"^[A-Z]{3}$"
_lock = threading.Lock()


@dataclass(frozen=True)
class ValidationReport:
    success: bool
    evaluated: int
    failures: list[str]


@lru_cache(maxsize=1)
def _batch_definition():
    # GX would otherwise try to send usage statistics on every context it builds.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # Progress bars would interleave with Dagster's structured logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("calibr_warehouse")
    asset = source.add_dataframe_asset("normalized_price_snapshots")
    return asset.add_batch_definition_whole_dataframe("partition")


@lru_cache(maxsize=1)
def snapshot_suite():
    import great_expectations as gx

    suite = gx.ExpectationSuite(name="normalized_price_snapshots")
    for column in ("listing_id", "snapshot_date", "amount", "currency", "observed_at"):
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeBetween(column="amount", min_value=0, strict_min=True))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToMatchRegex(column="currency", regex=ISO_CURRENCY_REGEX))
    suite.add_expectation(gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["listing_id", "snapshot_date"]))
    return suite


def validate_snapshots(frame: pd.DataFrame) -> ValidationReport:
    frame = frame.copy()
    # Decimal objects stay exact in the warehouse; GX compares numbers, and > 0 is exact
    # on a float for any amount that is itself a positive decimal.
    frame["amount"] = pd.to_numeric(frame["amount"].map(lambda v: None if v is None else str(v)), errors="coerce")
    with _lock:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(snapshot_suite())
    failures = []
    for item in result.results:
        if not item.success:
            config = item.expectation_config
            kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
            unexpected = (item.result or {}).get("unexpected_count")
            failures.append(f"{config.type} {kwargs} failed" + (f" ({unexpected} unexpected rows)" if unexpected is not None else ""))
    return ValidationReport(success=bool(result.success), evaluated=len(result.results), failures=failures)
