"""The composition root: the aiohttp application factory, middlewares and process entry."""
