"""The web layer: Bottle app (pages, REST API, Server-Sent Events) served by cheroot in a thread."""
