// The /api/docs page: Swagger UI (vendored, static/vendor/swagger-ui) showing this server's OpenAPI document.
const docs = document.getElementById("docs");
window.SwaggerUIBundle({
  url: docs.dataset.openapi,
  domNode: docs,
  deepLinking: true,
  // Requests made with "Try it out" go to this server only, with the token given under "Authorize".
  tryItOutEnabled: false,
});
