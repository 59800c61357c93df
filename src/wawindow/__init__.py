"""wawindow: WhatsApp Business conversation windows, tracked from Meta's webhooks."""

__version__ = "0.1.0.dev0"
