"""Meter acquisition (Modbus, MQTT), device templates, and the simulated township."""
