"""The demo's mappings with the merchants split into 4 partitions (ZONESYNC_MAPPING_MODULES for partition tests)."""

from __future__ import annotations

import dataclasses

from zonesync.schemas import examples

MERCHANTS = dataclasses.replace(examples.MERCHANTS, partitions=4)
PAYMENTS = examples.PAYMENTS
