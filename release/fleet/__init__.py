"""Fleets: inventories, host patterns and the fleet stages (one release to many hosts,
in parallel and in waves, with exact fleet-wide undo)."""
