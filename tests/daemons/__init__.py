"""Small daemons the tests run as real processes."""
