"""Prefect flows: orchestration only, reading like the specification's flow diagrams."""

from zonesync.flows.interpreter import serialize_ast_parse

serialize_ast_parse()  # before a flow run starts its threads (see the module)
