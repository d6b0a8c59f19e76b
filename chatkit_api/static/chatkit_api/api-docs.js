// Swagger UI over this service's OpenAPI schema (the page at /api/docs/).
(() => {
  "use strict";

  const root = document.getElementById("swagger-ui");
  SwaggerUIBundle({
    url: root.dataset.schemaUrl,
    domNode: root,
    deepLinking: true,
    // "Try it out" calls the API from this page, like the try-it page does: with Django's
    // CSRF token whenever its cookie is set.
    requestInterceptor(request) {
      const prefix = `${root.dataset.csrfCookieName}=`;
      const cookie = document.cookie.split("; ").find((part) => part.startsWith(prefix));
      if (cookie) request.headers["X-CSRFToken"] = decodeURIComponent(cookie.slice(prefix.length));
      return request;
    },
  });
})();
