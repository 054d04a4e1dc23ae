"""Modbus TCP / RTU connector: coalesced polling of typed tags, one task per device."""
