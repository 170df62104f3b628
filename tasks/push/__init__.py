"""The real-time push: records from applications made ready, carried, and answered per key."""
