"""The cloud layer: EGI site list, Check-in login, preflight and discovery (openstacksdk)."""
