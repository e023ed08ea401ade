"""The HTTP edge: handlers, middlewares and the static page."""
