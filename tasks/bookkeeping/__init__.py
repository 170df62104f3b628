"""The bookkeeping tables in the intranet zone and what keeps them: ledger, leases, audit, idempotency."""
