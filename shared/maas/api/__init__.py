"""The HTTP edge: wire types, codecs, routes, and the Lambda apps (`http_app` for inference, `registry_app`
for the registry). Import the app you need directly, so a function loads only what it serves."""
