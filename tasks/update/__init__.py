"""The update with rollback: both zones change or neither, with two-phase commit or a durable intent."""
