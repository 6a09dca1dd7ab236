"""The sweep: a spec read, overridden and validated (spec, with the user's plugins), and planned into runs, groups and chunks (plan)."""
