"""One mapping's rows carried batch by batch: read, transform, validate, claim, write, flag."""
