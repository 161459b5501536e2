"""Operating the platform: CLI, demo, health, the local stack, REST clients, dashboards."""
