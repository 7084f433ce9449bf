"""Provider back ends. Each module has ``backend(method) -> Backend`` (raising
ProviderUnavailable with a reason) and is imported only when the registry first needs it."""
