"""The MQTT uplink: telemetry, state changes, plans and notifications to a broker; commands in; MQTT as a source.

Importing this package costs nothing: `aiomqtt` (and paho under it) is imported by `ems.mqtt.client` only when
a connection is made, i.e. only while `mqtt.enabled` is on. The parts, each with one job:

- `topics`    — the topic layout under `phoenyra/<site id>/` and the site id itself;
- `uplink`    — pure builders of the JSON messages (units in keys, timestamps) and what counts as a state change;
- `outbox`    — the bounded on-disk queue (SQLite, batched writes) that keeps per-stream sequence numbers;
- `commands`  — validating commands against their schema and handing them to a `CommandPort`;
- `sources`   — configured topics read as plant-state points (source "mqtt");
- `homeassistant` — the retained Home Assistant discovery payloads;
- `client`    — the aiomqtt connection (TLS, last will) and how its errors are told apart;
- `service`   — the supervised task that ties them together (`MqttService.run`);
- `probe`     — the connection test behind `POST /api/mqtt/test`;
- `ports`     — what the service needs from the rest of the EMS (`UplinkSource`, `CommandPort`).
"""
