"""Work orders from outside: the MQTT command topic, the HTTP API and its CLI, the CSV schedule.

The sources parse and check what arrives and hand it to an `OrderDesk` (desk.py), which the
daemon implements with the rules engine. Modules: `commands` (JSON → OrderCommand),
`schedule` (CSV → PlannedOrder), `mqtt` (OrderCommandListener), `http` (OrderApi),
`cli` (`mesgw order`).
"""
