"""Partitioning: one partition per calendar day (UTC) and tenant.

A two-dimensional partition lets an operator re-run one tenant's day, or backfill a date
range for one or all tenants, from the Dagster UI. Tenants are a dynamic dimension: the
``tenant_partitions_sensor`` adds a key for every tenant in the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg

from calibr_pipeline import settings

# Partitions start where the deployment's data starts (CALIBR_HISTORY_START), not at an
# arbitrary date: a day before any data is a partition that can never be filled, and the
# UI's "% filled" would count it as missing.
HISTORY_START = settings.history_start()
# The first whole ISO week (Monday) and the month on or after the first day of data.
FIRST_WEEK_START = HISTORY_START + timedelta(days=-HISTORY_START.weekday() % 7)
FIRST_MONTH_START = HISTORY_START.replace(day=1)

TENANT_PARTITIONS = dg.DynamicPartitionsDefinition(name="tenant")
# end_offset=1: today's partition exists today, because a scrape observes today's prices.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date=HISTORY_START.isoformat(), timezone="UTC", end_offset=1)
DAILY_TENANT_PARTITIONS = dg.MultiPartitionsDefinition({"date": DAILY_PARTITIONS, "tenant": TENANT_PARTITIONS})


@dataclass(frozen=True)
class DayTenant:
    day: date
    tenant_slug: str

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"date": self.day.isoformat(), "tenant": self.tenant_slug})


def day_tenant(context) -> DayTenant:
    keys = context.partition_key.keys_by_dimension
    return DayTenant(date.fromisoformat(keys["date"]), keys["tenant"])
