"""The automations zonesync ships, installed so that they act (`zonesync automations install`).

`deployments/automations.yaml` declares them: a name, what it watches (a Prefect event trigger) and a description
an operator reads in the UI. Those that watch what an operator must act on are declared with Prefect's placeholder
action (`do-nothing`, so the file stays loadable by `prefect automation create` on its own); installing gives
each the operator's notification instead: a block of theirs (Slack, Teams, email, PagerDuty, ... any block that
can notify), or a webhook block made here from a URL. The zombie automation keeps its own action (it marks runs
Crashed). Installing again replaces the automations of the same names: it is how a changed block or file lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import yaml
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore
from prefect.exceptions import ObjectNotFound

from zonesync.schemas.errors import ConfigError

AUTOMATIONS_FILE = Path(__file__).resolve().parents[2] / "deployments" / "automations.yaml"
WEBHOOK_BLOCK = "zonesync-webhook"  # the Custom Webhook block `--webhook` makes (or replaces)
PLACEHOLDER = [{"type": "do-nothing"}]

# Prefect renders these with the automation and the event that fired it; zonesync's payloads hold counts, keys
# and zonesync's words, never a record value.
SUBJECT = "{{ automation.name }}"
BODY = (
    "{{ automation.description }}\n\n"
    "Event: {{ event.event }} on {{ event.resource.id }} at {{ event.occurred }}\n"
    "Details: {{ event.payload }}"
)


@dataclass(frozen=True)
class Installed:
    """One automation on the server, and what it does when it fires."""

    name: str
    action: str


def webhook_block(url: str) -> UUID:
    """A Custom Webhook notification block posting {"subject", "body"} as JSON to `url` (saved as WEBHOOK_BLOCK).

    The URL is kept as the block's secret (webhook URLs often carry a token): Prefect's UI and API show it masked.
    It is the operator's own: an alert receiver inside the bank's network is usual, so private addresses are
    allowed (Prefect refuses them by default, against URLs an attacker could template)."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError("--webhook: not an http(s) URL")  # the URL itself is not repeated: it may hold a token
    block = CustomWebhookNotificationBlock.model_validate(
        {"name": "zonesync", "url": "{{url}}", "secrets": {"url": url},
         "json_data": {"subject": "{{subject}}", "body": "{{body}}"}, "allow_private_urls": True}
    )  # fmt: skip
    return cast(UUID, block.save(WEBHOOK_BLOCK, overwrite=True))  # async-dispatched: from sync code, the value


def named_block(reference: str) -> UUID:
    """The id of the operator's notification block, given as TYPE/NAME (`prefect block ls` lists them)."""
    block_type, _, name = reference.partition("/")
    if not block_type or not name:
        raise ConfigError(f"--block: {reference!r} is not TYPE/NAME (e.g. slack-webhook/ops-alerts)")
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, block_type_slug=block_type)
        except ObjectNotFound:
            raise ConfigError(f"--block: no block {reference!r} on the Prefect server (prefect block ls)") from None
        capabilities = document.block_schema.capabilities if document.block_schema else []
    if "notify" not in capabilities:
        raise ConfigError(f"--block: {reference!r} cannot send notifications (a {block_type} block)")
    assert document.id is not None
    return document.id


def declared() -> list[dict[str, Any]]:
    """The automations of automations.yaml, as declared."""
    automations: list[dict[str, Any]] = yaml.safe_load(AUTOMATIONS_FILE.read_text(encoding="utf-8"))["automations"]
    return automations


def with_notification(spec: dict[str, Any], block: UUID) -> AutomationCore:
    """The automation, its placeholder action replaced by the notification."""
    actions = spec["actions"]
    if actions == PLACEHOLDER:
        actions = [SendNotification(block_document_id=block, subject=SUBJECT, body=BODY)]
    return AutomationCore.model_validate({**spec, "actions": actions, "enabled": True})


def install(block: UUID) -> list[Installed]:
    """Create every declared automation on the server, replacing those of the same names."""
    installed = []
    with get_client(sync_client=True) as client:
        for spec in declared():
            automation = with_notification(spec, block)
            for existing in client.read_automations_by_name(automation.name):
                client.delete_automation(existing.id)
            client.create_automation(automation)
            installed.append(Installed(automation.name, _describe(automation)))
    return installed


def _describe(automation: AutomationCore) -> str:
    """What the automation does, in a few words."""
    done = []
    for action in automation.actions:
        state = getattr(action, "state", None)
        done.append(f"marks the run {state.value}" if state else "notifies" if action.type == "send-notification"
                    else action.type)  # fmt: skip
    return ", ".join(done)
