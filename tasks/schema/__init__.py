"""The live schema: reflected tables, their shape, the accepted contract, and changes seen mid-run."""
