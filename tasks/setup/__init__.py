"""What `zonesync init`, `grants`, `mappings` and the demo install, print or seed."""
