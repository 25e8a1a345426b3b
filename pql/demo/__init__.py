"""The demo world: a simulated product-led company (accounts, users, events, plans, CRM) for `pql demo`."""
