"""Local fakes of external services, reached through their official clients."""
