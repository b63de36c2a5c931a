"""Devices and the fleet: target resolution, the inventory (fleet.yaml), Ansible
import, SSH host keys, and fan-out over devices into a `GroupResult`."""
