"""The Delivery Servers page (a row count until the full page lands)."""

from __future__ import annotations

from app.models import DeliveryServer
from app.views.pages.count_page import CountPage


class ServersPage(CountPage):
    title = "Delivery Servers"
    summary = "SMTP relays that messages are handed to, with their tracking and bounce domains."
    entities = ("delivery_server",)
    model = DeliveryServer
