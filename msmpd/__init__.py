"""msmpd package."""
