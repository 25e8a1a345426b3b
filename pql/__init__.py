"""pql: product-qualified lead scoring from product usage, written back to the CRM."""

__version__ = "0.1.0"
