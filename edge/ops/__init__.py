"""The operations on a fleet: push, pull, convert (with build-once sharing and dry
runs), bench and validate, and device facts. Each returns one result per device."""
