"""The alert workers a server runs beside its routes: the SLA engine, the traffic watch and
webhook delivery (``IOC_SLA_ENGINE``; ``ioc alerts run`` runs them on their own instead)."""

from __future__ import annotations

from alerting.engine import SlaEngine
from alerting.traffic import TrafficWatch
from alerting.webhooks import WebhookDispatcher
from ioc.platform import Platform
from ioc.routing.router import Router


def install_alerting(platform: Platform) -> None:
    """Run the SLA engine, the traffic watch and the webhook dispatcher with the platform."""
    settings = platform.settings
    if not settings.sla_engine:
        return

    def router() -> Router:
        if platform.desk is None:
            raise RuntimeError("routing is not loaded")
        return platform.desk.router

    async def sla() -> None:
        await SlaEngine(platform.pool, platform.clock, settings, lambda: platform.book).run()

    async def traffic() -> None:
        await TrafficWatch(settings, router).run(platform.pool, platform.clock)

    async def webhooks() -> None:
        await WebhookDispatcher(platform.pool, platform.clock, settings).run()

    platform.add_worker("sla-engine", sla)
    platform.add_worker("traffic-watch", traffic)
    platform.add_worker("webhooks", webhooks)
