"""End-day reconciliation computed in the databases: the queries, the comparison, the report."""
