"""pop3d package."""
