"""Southbound connectors (OPC UA, Modbus): read PLC tags and yield samples; nothing more.

A connector never knows about rules or MQTT. The protocols arrive with the connectors work;
until then `gateway.synthetic` stands in as the event source.
"""
