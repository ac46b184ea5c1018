"""Partitioning: one partition per calendar day (UTC) and tenant.

A two-dimensional partition lets an operator re-run one tenant's day, or backfill a date
range for one or all tenants, from the Dagster UI. Tenants are a dynamic dimension: the
``tenant_partitions_sensor`` adds a key for every tenant in the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import dagster as dg

TENANT_PARTITIONS = dg.DynamicPartitionsDefinition(name="tenant")
# end_offset=1: today's partition exists today, because a scrape observes today's prices.
DAILY_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
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
